"""Spark settings derived from the topology, for sessions and for spark-submit.

The driver runs on the host (client mode) from the project venv; executors run in the worker
containers with the image's /opt/venv Python. Everything binds the loopback address.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.topology import Topology

# One interpreter *name* for executors (the Spark image's /usr/local/bin/vpp-python) and for the
# Python workers Spark starts on the driver host to plan Python data sources (.venv/bin/
# vpp-python, written by make setup): Spark passes the same pythonExec to both.
EXECUTOR_PYTHON = "vpp-python"


def spark_conf(topo: Topology, app_name: str, extra: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    conf = {
        "spark.master": topo.spark_master_url,
        "spark.app.name": app_name,
        "spark.driver.host": topo.bind_host,
        "spark.driver.bindAddress": topo.bind_host,
        "spark.ui.port": str(topo.spark.driver_ui_port),
        "spark.ui.showConsoleProgress": "false",
        "spark.executor.memory": f"{topo.spark.executor_memory_mb}m",
        "spark.executor.cores": "1",
        "spark.pyspark.python": EXECUTOR_PYTHON,
        "spark.pyspark.driver.python": sys.executable,
        "spark.hadoop.fs.defaultFS": topo.hdfs_url,
        # Closing an HDFS file asks the namenode to complete it; if the datanode's block report
        # has not arrived yet the client sleeps, 400 ms by default, before asking again. Every
        # micro-batch closes several small files (offset log, commit log, state deltas, data):
        # the offset and commit log writes took 414-481 ms each per batch, 15-94 ms with this.
        # Ask again sooner, and often enough for a longer total wait before giving up
        # (20 ms doubling 10 times ~ 20 s; the default 400 ms 5 times ~ 12 s).
        "spark.hadoop.dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20",
        "spark.hadoop.dfs.client.block.write.locateFollowingBlock.retries": "10",
        "spark.sql.session.timeZone": "UTC",
        # Every executor reports host 127.0.0.1 (host networking), so Spark would take another
        # worker's shuffle blocks for host-local and read them from a disk it cannot see
        # (each worker container has its own filesystem): fetch them over the network.
        "spark.shuffle.readHostLocalDisk": "false",
        # Workers are put to sleep by decommissioning them first (autoscaler/): shuffle and
        # cached blocks migrate instead of being lost with the executor.
        "spark.decommission.enabled": "true",
        "spark.storage.decommission.enabled": "true",
        "spark.storage.decommission.shuffleBlocks.enabled": "true",
        "spark.storage.decommission.rddBlocks.enabled": "true",
    }
    conf.update(extra or {})
    return conf


def _driver_env(env: dict[str, str]) -> dict[str, str]:
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = EXECUTOR_PYTHON
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    env["SPARK_LOCAL_IP"] = "127.0.0.1"  # never bind or advertise a non-loopback address
    return env


def build_session(topo: Topology, app_name: str, extra: Mapping[str, str] | None = None):
    from pyspark.sql import SparkSession

    # The JVM this starts inherits the environment: vpp-python must resolve on the host too.
    os.environ.update(_driver_env(dict(os.environ)))
    builder = SparkSession.builder
    for key, value in spark_conf(topo, app_name, extra).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_home() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent)


def submit_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for spark-submit: its launcher looks for SPARK_HOME with `python3` from PATH,
    which is not the venv's, so name both explicitly."""
    env = _driver_env(dict(os.environ if base is None else base))
    env["SPARK_HOME"] = spark_home()
    return env


def spark_submit_bin() -> str:
    candidate = Path(sys.executable).with_name("spark-submit")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("spark-submit")
    if found is None:
        raise FileNotFoundError("spark-submit not found next to the venv python nor on PATH")
    return found


def submit_command(topo: Topology, script: str | os.PathLike[str], app_args: Sequence[str] = (),
                   app_name: str | None = None, extra: Mapping[str, str] | None = None,
                   py_files: Sequence[str] = ()) -> list[str]:
    conf = spark_conf(topo, app_name or Path(script).stem, extra)
    cmd = [spark_submit_bin(), "--master", conf.pop("spark.master")]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    if py_files:
        cmd += ["--py-files", ",".join(py_files)]
    return [*cmd, str(script), *app_args]
