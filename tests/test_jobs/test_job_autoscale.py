"""The job on Ray's fake multi-node autoscaler: the cluster grows for the job's actors.

A head with no CPU for actors and a worker type of 1 CPU (at most 3 nodes), all on this
machine (``fake_multinode`` provider, as ``ray.cluster_utils.AutoscalingCluster`` builds
it). The job asks for one actor per shard although nothing fits when it starts; the
autoscaler adds nodes for them, the actors take shards as they become ready, and the
corpus RTTM is byte-identical to a ``--local`` run.

``AutoscalingCluster.start()`` / ``shutdown()`` run ``ray stop --force``, which would kill
every Ray process on the machine, and Ray 2.60's wheel lacks the example config it reads:
the head is started here by hand (``ray start --head --block`` on free ports, in its own
session and temp folder) and exactly its process group is stopped afterwards. The worker
nodes are started by the head's autoscaler, in that same group.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, free_port
from ray_fixtures import ray_head, read_log, tail

pytestmark = pytest.mark.slow

SAMPLE = REPO / "diar" / "data" / "sample" / "sim01_2spk.flac"

#: Worker nodes the autoscaler may add (1 CPU each) and shards of the corpus.
MAX_WORKERS = 3
NUM_SHARDS = 4


def autoscaling_config(gcs_address: str) -> dict[str, object]:
    """The fake provider's cluster config: ``AutoscalingCluster``'s, written out in full."""
    return {
        "cluster_name": "diar-fake",
        "max_workers": MAX_WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1.0,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,  # the worker nodes join our head, not one on port 6379
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {
                "resources": {"CPU": 1, "object_store_memory": 100 * 1024 * 1024},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_WORKERS,
            },
        },
        "head_node_type": "ray.head.default",
        "docker": {},
        "auth": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@contextmanager
def fake_autoscaling_cluster(env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """Start the head; yield its GCS address and its log folder; stop exactly what it started.

    Skips the test when the fake provider cannot start at all (no head, or an autoscaler
    that never comes up with the config).
    """
    head_env = {
        **env,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "AUTOSCALER_METRIC_PORT": str(free_port()),
    }

    def options(address: str, temp: Path) -> list[str]:
        config = temp / "autoscaling.json"
        config.write_text(json.dumps(autoscaling_config(address)))
        return ["--num-cpus=0", f"--autoscaling-config={config}", "--object-store-memory=100000000"]

    def not_ready(head_log: str, temp: Path) -> None:
        monitor = tail(temp / "session_latest" / "logs" / "monitor.log", 1500)
        pytest.skip(f"the fake multi-node autoscaler could not start: {head_log} {monitor}")

    def ready(temp: Path) -> bool:  # the autoscaler has loaded the config: the fake provider is up
        return "StandardAutoscaler:" in read_log(temp / "session_latest" / "logs" / "monitor.log")

    with ray_head(options, head_env, ready, not_ready, timeout=180) as (address, temp):
        yield address, temp / "session_latest" / "logs"


def make_corpus(folder: Path) -> Path:
    """Four recordings made from the bundled sample (each starts at another point of it)."""
    audio, rate = sf.read(SAMPLE, dtype="float32")
    folder.mkdir(parents=True)
    lines = []
    for i in range(NUM_SHARDS):
        path = folder / f"part{i}.wav"
        sf.write(path, np.roll(audio, -i * 7 * rate), rate, subtype="PCM_16")
        lines.append(f"part{i} {path}")
    scp = folder / "wav.scp"
    scp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return scp


def test_the_autoscaler_adds_nodes_for_the_actors_and_the_output_is_that_of_one_process(
    tmp_path: Path,
) -> None:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        # the workers on the fake nodes import diar and jobs from this checkout
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    env.pop("RAY_ADDRESS", None)
    scp = make_corpus(tmp_path / "corpus")
    job = [sys.executable, "-m", "jobs.diarize", "--config", str(REPO / "configs" / "default.yaml")]
    job += ["--wav-scp", str(scp), "--num-shards", str(NUM_SHARDS), "--no-progress"]

    with fake_autoscaling_cluster(env) as (address, logs):
        out = tmp_path / "cluster"
        done = subprocess.run(
            [*job, "--out", str(out), "--address", address],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-4000:] + tail(logs / "monitor.log")
        monitor = (logs / "monitor.log").read_text(errors="replace")
    assert "Adding" in monitor and "ray.worker.cpu" in monitor  # the autoscaler launched workers

    summary = json.loads((out / "summary.json").read_text())
    # nothing fitted on the head when the job started, yet it asked for one actor per shard
    assert summary["num_actors"] == NUM_SHARDS
    assert 1 <= summary["actors_ready"] <= MAX_WORKERS
    records = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.done.json"))]
    nodes = {r["node_id"] for r in records}
    assert len(records) == NUM_SHARDS and None not in nodes and FAKE_HEAD_NODE_ID not in nodes
    assert len(nodes) >= 2, f"every shard ran on one node: {nodes}"
    assert summary["nodes"] == len(nodes)

    local = tmp_path / "local"
    here = subprocess.run(
        [*job, "--out", str(local), "--local"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert here.returncode == 0, here.stderr[-3000:]
    assert (out / "corpus.rttm").read_bytes() == (local / "corpus.rttm").read_bytes()
    assert (local / "corpus.rttm").read_text().count("SPEAKER part3 1 ") > 5
