#!/usr/bin/env bash
# `make setup`: everything the project needs on a fresh Debian bookworm machine, idempotent and
# cached. A warm run only checks and takes a few seconds.
#
#   1. Debian packages: docker.io (engine), debootstrap, Java 17, Maven, Python venv support
#   2. a running dockerd (started in the background if none answers)
#   3. the debian:bookworm-slim base image (pulled if a registry answers, else debootstrap + import)
#   4. Hadoop server jars from Maven Central (pinned in infra/hadoop/pom.xml)
#   5. the project virtualenv (.venv) with the pinned dependencies of pyproject.toml
#   6. wheels for the Spark image, then the images themselves (python -m infra build)
#
# Downloads are cached under $VPP_CACHE (default ~/.cache/vpp-twin) so a second run is fast.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${VPP_CACHE:-$HOME/.cache/vpp-twin}
VENV=${VPP_VENV:-$ROOT/.venv}
PYTHON=${VPP_PYTHON:-python3.11}
HADOOP_VERSION=$(sed -n 's:.*<hadoop.version>\(.*\)</hadoop.version>.*:\1:p' "$ROOT/infra/hadoop/pom.xml")
PYSPARK_VERSION=$(sed -n 's/^pyspark==\(.*\)$/\1/p' "$ROOT/infra/docker/spark/requirements.txt")
DOCKERD_LOG=${VPP_DOCKERD_LOG:-/var/log/vpp-twin-dockerd.log}
export PIP_CACHE_DIR="$CACHE/pip-cache" PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$CACHE"

t0=$(date +%s)
step() { printf '==> [setup %3ss] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# -- 1. Debian packages ------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
command -v curl >/dev/null || need+=(curl)
command -v "$PYTHON" >/dev/null || need+=(python3 python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  step "installing Debian packages: ${need[*]}"
  as_root apt-get install -y -q "${need[@]}" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${need[@]}" >/dev/null; } \
    || die "apt-get install ${need[*]} failed"
fi
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' \
  || die "Python >= 3.11 is required (pyspark 4.3); $PYTHON is $("$PYTHON" -V 2>&1)"

# -- 2. Docker engine --------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  step "starting dockerd (log: $DOCKERD_LOG)"
  as_root bash -c "setsid nohup dockerd >>'$DOCKERD_LOG' 2>&1 < /dev/null &"
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s; see $DOCKERD_LOG"
fi

# -- 3. base image -----------------------------------------------------------------------------
if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    step "pulled debian:bookworm-slim"
  else
    tarball="$CACHE/base/debian-bookworm-minbase.tar"
    if [ ! -s "$tarball" ]; then
      step "no registry answers: building debian:bookworm-slim with debootstrap (about a minute)"
      rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
      as_root debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $CACHE/debootstrap.log"
      # Like the official slim image: no service starts during apt-get in a build, no apt cache.
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$rootfs/usr/sbin/policy-rc.d" >/dev/null
      as_root chmod 755 "$rootfs/usr/sbin/policy-rc.d"
      as_root rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
      mkdir -p "$CACHE/base"
      as_root tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
      as_root rm -rf "$rootfs"
    fi
    step "importing debian:bookworm-slim from $tarball"
    docker import --change 'CMD ["bash"]' "$tarball" debian:bookworm-slim >/dev/null
  fi
fi

# -- 4. Hadoop server jars ---------------------------------------------------------------------
jars="$CACHE/hadoop/$HADOOP_VERSION"
if [ ! -f "$jars/.complete" ]; then
  step "fetching Hadoop $HADOOP_VERSION server jars from Maven Central"
  rm -rf "$jars"
  mvn -q -B -f "$ROOT/infra/hadoop/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$jars" \
    || die "mvn could not fetch the Hadoop jars"
  touch "$jars/.complete"
fi

# -- 5. virtualenv -----------------------------------------------------------------------------
wheels="$CACHE/wheels"
mkdir -p "$wheels"
if ! ls "$wheels"/pyspark-"$PYSPARK_VERSION"-*.whl >/dev/null 2>&1; then
  # pyspark ships only as a 456 MB sdist; build its wheel once and keep it for venv and image.
  step "building the pyspark $PYSPARK_VERSION wheel (downloads 456 MB once)"
  "$PYTHON" -m pip wheel -q --no-deps -w "$wheels" "pyspark==$PYSPARK_VERSION" || die "pyspark wheel build failed"
fi
stamp="$VENV/.vpp-stamp"
want=$(cat "$ROOT/pyproject.toml" "$ROOT/infra/docker/spark/requirements.txt" | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating the virtualenv $VENV"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --find-links "$wheels" -e "$ROOT[dev]" || die "pip install into $VENV failed"
  echo "$want" > "$stamp"
fi
# The interpreter name Spark hands to executors and to driver-side Python workers alike
# (spark_jobs/session.py); the Spark image has its own `vpp-python`.
printf '#!/bin/sh\nexec "%s/bin/python" "$@"\n' "$VENV" > "$VENV/bin/vpp-python"
chmod 755 "$VENV/bin/vpp-python"

# -- 6. images ---------------------------------------------------------------------------------
req="$ROOT/infra/docker/spark/requirements.txt"
req_stamp="$wheels/.image-$(sha256sum "$req" | cut -c1-16)"
if [ ! -f "$req_stamp" ]; then
  step "downloading the Spark image's wheels"
  "$VENV/bin/pip" download -q --find-links "$wheels" -d "$wheels" -r "$req" \
    || die "could not download the Spark image's wheels"
  touch "$req_stamp"
fi
VPP_HADOOP_JARS="$jars" VPP_WHEELS="$wheels" VPP_CACHE="$CACHE" "$VENV/bin/python" -m infra build
step "ready"
