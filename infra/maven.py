"""Jars from Maven Central into the project's download cache, the way ``infra/setup.sh`` fetches
the Hadoop server jars: ``mvn dependency:copy-dependencies`` on a pinned POM, the local Maven
repository under ``$VPP_CACHE/m2``, and a ``.complete`` marker so a second call does nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


class MavenError(RuntimeError):
    """The jars could not be fetched; the message says why (no mvn, or what mvn printed)."""


def cache_dir() -> Path:
    """``$VPP_CACHE``, default ``~/.cache/vpp-twin`` (as in infra/setup.sh and infra/build.py)."""
    return Path(os.environ.get("VPP_CACHE", Path.home() / ".cache" / "vpp-twin"))


def pom_property(pom: Path, name: str) -> str:
    """A ``<properties>`` value of a POM (the pinned version), as setup.sh reads it with sed."""
    m = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", pom.read_text())
    if m is None:
        raise MavenError(f"{pom}: no <{name}> property")
    return m.group(1)


def fetch_jars(pom: Path, dest: Path, timeout_s: float = 600.0) -> Path:
    """The runtime jars of ``pom``'s dependencies in ``dest`` (fetched once, then cached)."""
    if (dest / ".complete").is_file():
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError("mvn is not on PATH (make setup installs Maven)")
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), f"-Dmaven.repo.local={cache_dir() / 'm2'}",
           "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={dest}"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise MavenError(f"mvn did not finish within {timeout_s:.0f} s") from None
    if out.returncode != 0 or not any(dest.glob("*.jar")):
        lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln] or lines
        raise MavenError(f"mvn exited {out.returncode}: " + " ".join(errors[:2])[:400])
    (dest / ".complete").touch()
    return dest
