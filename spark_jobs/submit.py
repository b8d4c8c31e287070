"""spark-submit the streaming job to the standalone master, with settings from the topology.

    python -m spark_jobs.submit [telemetry_job args...]     (make submit-stream ARGS="...")
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infra.topology import load_topology
from spark_jobs.session import submit_command, submit_env
from spark_jobs.telemetry_job import SESSION_CONF

JOB = Path(__file__).with_name("telemetry_job.py")


def command(job_args: list[str]) -> list[str]:
    topo = load_topology()
    # No --py-files: the driver imports the installed project; executors get the zip from
    # the job itself (sc.addPyFile), so they always run the driver's code.
    return submit_command(topo, JOB, job_args, app_name="vpp-telemetry", extra=SESSION_CONF)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    cmd = command(args)
    # exec: Ctrl-C and SIGTERM reach spark-submit (and through it the driver) directly.
    os.execvpe(cmd[0], cmd, submit_env())


if __name__ == "__main__":
    main()
