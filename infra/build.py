"""Build the platform's images from ``infra/docker/<image>/`` (called by ``make setup``).

Each image's build context is staged under the cache (hard links, so the 450 MB pyspark wheel
costs nothing) and hashed; an image whose ``vpp-twin.context`` label already equals the hash is
not rebuilt, so a warm ``make setup`` does no Docker work.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from infra.topology import Topology, load_topology

DOCKER_DIR = Path(__file__).with_name("docker")
CONTEXT_LABEL = "vpp-twin.context"

# Large inputs fetched by infra/setup.sh, staged into a context under this directory name.
EXTRAS = {"hadoop": ("VPP_HADOOP_JARS", "jars"), "spark": ("VPP_WHEELS", "wheels")}


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.name.startswith("."):
            continue
        target = dst / item.name
        if item.is_dir():
            _link_tree(item, target)
            continue
        try:
            os.link(item, target)
        except OSError:
            shutil.copy2(item, target)


def stage_context(name: str, cache: Path) -> Path:
    ctx = cache / "build" / name
    shutil.rmtree(ctx, ignore_errors=True)
    _link_tree(DOCKER_DIR / name, ctx)
    if name in EXTRAS:
        env, sub = EXTRAS[name]
        src = os.environ.get(env)
        if not src or not Path(src).is_dir():
            raise SystemExit(f"build: {env} must point at the directory fetched by infra/setup.sh")
        _link_tree(Path(src), ctx / sub)
    return ctx


def context_hash(ctx: Path) -> str:
    """Content hash of small files; name and size of big ones (jars and wheels carry versions)."""
    h = hashlib.sha256()
    for path in sorted(p for p in ctx.rglob("*") if p.is_file()):
        rel = path.relative_to(ctx).as_posix()
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if size < 1 << 20:
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _image_label(tag: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format",
         f'{{{{index .Config.Labels "{CONTEXT_LABEL}"}}}}', tag],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() if out.returncode == 0 else None


def build_image(name: str, tag: str, cache: Path) -> bool:
    """Build one image if its context changed. Returns True when a build ran."""
    ctx = stage_context(name, cache)
    digest = context_hash(ctx)
    if _image_label(tag) == digest:
        return False
    size_mb = sum(p.stat().st_size for p in ctx.rglob("*") if p.is_file()) / 1e6
    print(f"==> building {tag} (context {size_mb:.0f} MB)", flush=True)
    t0 = time.monotonic()
    cmd = ["docker", "build", "--network", "host", "--label", f"{CONTEXT_LABEL}={digest}",
           "-t", tag, str(ctx)]
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            if line.startswith("Step "):
                print(f"    {line.rstrip()[:110]}", flush=True)
    if proc.returncode != 0:
        print("\n".join(tail), file=sys.stderr)
        raise SystemExit(f"build: docker build of {tag} failed (exit {proc.returncode})")
    print(f"    built {tag} in {time.monotonic() - t0:.0f} s", flush=True)
    return True


def build_all(topo: Topology, cache: Path) -> None:
    for name, tag in sorted(topo.images.items()):
        if not (DOCKER_DIR / name / "Dockerfile").is_file():
            raise SystemExit(f"build: images.{name}: no Dockerfile at {DOCKER_DIR / name}")
        build_image(name, tag, cache)


def main() -> None:
    cache = Path(os.environ.get("VPP_CACHE", Path.home() / ".cache" / "vpp-twin"))
    build_all(load_topology(), cache)


if __name__ == "__main__":
    main()
