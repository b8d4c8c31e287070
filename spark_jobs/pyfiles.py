"""The project's packages as one zip for executors (``sc.addPyFile``): the stream source,
the parser and the twin are imported by reference when Spark unpickles them there."""

from __future__ import annotations

import hashlib
import zipfile

from infra.state import ROOT, state_dir

PACKAGES = ("infra", "ingest", "spark_jobs", "monitor")


def project_zip() -> str:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*")
                   if p.is_file() and p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(ROOT).as_posix().encode())
        digest.update(p.read_bytes())
    out_dir = state_dir() / "pyfiles"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"vpp-{digest.hexdigest()[:12]}.zip"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in files:
                zf.write(p, p.relative_to(ROOT).as_posix())
        tmp.replace(out)
    return str(out)
