"""Runs the diarization job in its own Ray with a declared GPU (``num_gpus=1``, models on CPU).

``python stages_driver.py SCP RUNS_JSON [ADDRESS]``: RUNS_JSON is a list of ``{"out": OUT,
"set": [...]}`` with optionally ``"dies_once": MARKER`` (the embedding actor kills itself once,
see :class:`job_helpers.DiesOnce`), ``"fails_on": NUM_SAMPLES`` with ``"how"`` (:class:`job_helpers.FailsOn`)
or ``"slow_finish": SECONDS`` (:class:`job_helpers.SlowFinish`); prints one JSON line per run
(exit code, shards run). With ADDRESS it joins that Ray cluster instead of starting one.
The job tests' session Ray has no GPU, so the stage split's tests start this driver.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import job_helpers
    import ray
    from ray import cloudpickle

    from diar.config import load_config
    from jobs.diarize import run_job

    cloudpickle.register_pickle_by_value(job_helpers)
    scp, runs = sys.argv[1], json.loads(sys.argv[2])
    if len(sys.argv) > 3:
        ray.init(address=sys.argv[3], log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        for run in runs:
            factory = None
            if run.get("dies_once"):
                factory = job_helpers.DiesOnce(run["dies_once"], "embed_inputs")
            elif run.get("fails_on"):
                factory = job_helpers.FailsOn(run["fails_on"], run.get("how", "raise"))
            elif run.get("slow_finish"):
                factory = job_helpers.SlowFinish(run["slow_finish"])
            report = run_job(load_config(None, run["set"]), scp, run["out"], diarizer_factory=factory)
            print(json.dumps({"exit_code": report.exit_code, "shards_run": report.shards_run}), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
