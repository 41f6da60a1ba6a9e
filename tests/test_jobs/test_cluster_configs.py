"""configs/cluster/: the cluster-launcher configs pass Ray's own checks, the RayJob is well formed.

``ray up`` fills a config with its provider's defaults and validates it against
Ray's schema (``prepare_config``, ``validate_config``) before it touches a cloud;
these tests do the same offline. The KubeRay manifest is checked against the
fields of the RayJob CRD (ray.io/v1) and its ``rayStartParams`` against the
options of ``ray start``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO

CLUSTER = REPO / "configs" / "cluster"

#: Fields of the RayJob CRD (KubeRay ray.io/v1) and of the specs inside it.
RAYJOB_SPEC = {
    "activeDeadlineSeconds", "backoffLimit", "clusterSelector", "deletionStrategy", "entrypoint",
    "entrypointNumCpus", "entrypointNumGpus", "entrypointResources", "jobId", "managedBy", "metadata",
    "rayClusterSpec", "runtimeEnvYAML", "shutdownAfterJobFinishes", "submissionMode", "submitterConfig",
    "submitterPodTemplate", "suspend", "ttlSecondsAfterFinished",
}  # fmt: skip
RAYCLUSTER_SPEC = {
    "autoscalerOptions", "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec",
    "headServiceAnnotations", "managedBy", "rayVersion", "suspend", "workerGroupSpecs",
}  # fmt: skip
HEAD_GROUP = {"enableIngress", "headService", "rayStartParams", "serviceType", "template"}
WORKER_GROUP = {
    "groupName", "idleTimeoutSeconds", "maxReplicas", "minReplicas", "numOfHosts", "rayStartParams",
    "replicas", "scaleStrategy", "suspend", "template",
}  # fmt: skip
AUTOSCALER_OPTIONS = {
    "env", "envFrom", "idleTimeoutSeconds", "image", "imagePullPolicy", "resources", "securityContext",
    "upscalingMode", "version", "volumeMounts",
}  # fmt: skip
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def ray_version() -> str:
    import ray

    return str(ray.__version__)


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cluster_launcher_config_passes_ray_up_checks(name: str) -> None:
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = load(name)
    config = prepare_config(raw)  # the provider's defaults filled in, as `ray up` does
    validate_config(config)  # Ray's schema (ray-schema.json) and its cross-field checks
    assert config["provider"]["type"] == name.split(".")[0]

    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0  # the driver only: actors go to the workers
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    cpu = [v for v in workers.values() if not v["resources"].get("GPU")]
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) >= 1]
    assert len(cpu) == 1 and len(gpu) == 1, "one CPU and one GPU worker type"
    for node in workers.values():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= config["max_workers"]
        assert node["resources"]["CPU"] >= 1
        commands = " && ".join(node["worker_setup_commands"])
        assert "-c ~/diar/constraints.txt -e ~/diar" in commands  # diar itself, torch pinned
    # the right torch build: PyTorch's CPU index on CPU nodes, PyPI's CUDA wheel on GPU nodes
    assert "download.pytorch.org/whl/cpu torch==" in " ".join(cpu[0]["worker_setup_commands"])
    assert "whl/cpu" not in " ".join(gpu[0]["worker_setup_commands"])
    assert "torch==" in " ".join(gpu[0]["worker_setup_commands"])
    assert raw["file_mounts"] == {"~/diar": "."}
    # the cluster runs the Ray version of the driver that submits to it
    images = [config["docker"]["image"], gpu[0]["docker"]["worker_image"]]
    assert all(image.startswith(f"rayproject/ray:{ray_version()}-") for image in images), images
    assert gpu[0]["docker"]["worker_image"].endswith("-gpu")


def test_kuberay_rayjob_is_well_formed() -> None:
    job = load("kuberay-rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC, set(spec) - RAYJOB_SPEC
    assert spec["submissionMode"] in SUBMISSION_MODES
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert set(cluster) <= RAYCLUSTER_SPEC, set(cluster) - RAYCLUSTER_SPEC
    assert cluster["rayVersion"] == ray_version()
    assert cluster["enableInTreeAutoscaling"] is True
    assert set(cluster["autoscalerOptions"]) <= AUTOSCALER_OPTIONS
    assert cluster["autoscalerOptions"]["upscalingMode"] in {"Default", "Aggressive", "Conservative"}

    head = cluster["headGroupSpec"]
    assert set(head) <= HEAD_GROUP, set(head) - HEAD_GROUP
    assert head["rayStartParams"]["num-cpus"] == "0"  # the driver only
    groups = cluster["workerGroupSpecs"]
    for group in groups:
        assert set(group) <= WORKER_GROUP, set(group) - WORKER_GROUP
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names) == 2
    for group in [head, *groups]:
        check_ray_start_params(group["rayStartParams"])
        (container,) = group["template"]["spec"]["containers"]
        assert container["image"] and container["resources"]["limits"]["cpu"]
    gpu = [g for g in groups if "num-gpus" in g["rayStartParams"]]
    assert len(gpu) == 1
    (container,) = gpu[0]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpu[0]["rayStartParams"]["num-gpus"]

    # the entrypoint is a valid command line of the job, with a config the image holds
    import argparse

    from jobs.diarize import add_arguments

    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.diarize"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    args = parser.parse_args(argv[3:])
    assert (REPO / Path(args.config).relative_to("/home/ray/diar")).is_file()
    dockerfile = (CLUSTER / "Dockerfile").read_text(encoding="utf-8")
    assert "WORKDIR /home/ray/diar" in dockerfile and "COPY --chown=ray:users configs" in dockerfile
    assert f"rayproject/ray:{ray_version()}-" in dockerfile


def check_ray_start_params(params: dict[str, Any]) -> None:
    """Each key is an option of ``ray start`` and each value a string (KubeRay's map[string]string)."""
    from ray.scripts.scripts import start

    options = {o.lstrip("-") for p in start.params for o in p.opts}
    assert set(params) <= options, set(params) - options
    assert all(isinstance(v, str) for v in params.values()), params
    for key in ("num-cpus", "num-gpus"):
        if key in params:
            assert float(params[key]) >= 0
