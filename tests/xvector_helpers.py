"""Tiny FunASR x-vector checkpoints in ModelScope's layout, and the golden test signal.

Checkpoints are written the way ModelScope publishes
``damo/speech_xvector_sv-zh-cn-cnceleb-16k-spk3465-pytorch`` (configuration.json, sv.yaml,
sv.pb = torch.save of a FunASR state_dict, float-vector ``num_batches_tracked``). Key names
and shapes are spelled out from FunASR's layout, independently of diar's modules.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

#: A tiny network: every kind of layer (head conv, stride-2 projection shortcut, plain layer).
TINY = {"filters": [4, 6, 8, 8], "blocks": [1, 2, 1, 1], "pool": 8, "emb": 6, "vocab": 5, "n_mels": 80}


def funasr_layout(
    filters: list[int], blocks: list[int], pool: int, emb: int, vocab: int
) -> dict[str, tuple[int, ...]]:
    """FunASR's ESPnetSVModel state_dict (ResNet34 encoder + DenseDecoder): key -> shape."""
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, n: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (n,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["encoder.pre_conv.weight"] = (filters[0], 1, 3, 3)
    bn("encoder.pre_conv_bn", filters[0])
    cin = filters[0]
    for b, (cout, n) in enumerate(zip(filters, blocks, strict=True)):
        for i in range(n):
            c_in = cin if i == 0 else cout
            stride = 2 if (b > 0 and i == 0) else 1
            p = f"encoder.block_{b}.layer_{i}"
            bn(f"{p}.bn1", c_in)
            keys[f"{p}.conv1.weight"] = (cout, c_in, 3, 3)
            bn(f"{p}.bn2", cout)
            keys[f"{p}.conv2.weight"] = (cout, cout, 3, 3)
            if c_in != cout or stride > 1:
                keys[f"{p}.conv_sc.weight"] = (cout, c_in, 1, 1)
                bn(f"{p}.bn_sc", cout)
        cin = cout
    keys["encoder.resnet0_dense.weight"] = (pool, filters[-1], 1, 1)
    keys["encoder.resnet0_dense.bias"] = (pool,)
    bn("encoder.resnet0_bn", pool)
    keys["decoder.resnet1_dense.weight"] = (emb, 2 * pool)
    keys["decoder.resnet1_dense.bias"] = (emb,)
    bn("decoder.resnet1_bn", emb)
    keys["decoder.resnet2_dense.weight"] = (emb, emb)
    keys["decoder.resnet2_dense.bias"] = (emb,)
    bn("decoder.resnet2_bn", emb)
    keys["decoder.output_dense.weight"] = (vocab, emb)
    return keys


def make_state_dict(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in FunASR's layout, drawn in key order from one seeded generator.

    BatchNorm statistics are random too (eval mode uses them); ``num_batches_tracked`` is a
    float vector as in the TensorFlow-converted published checkpoint.
    """
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        module, name = key.rsplit(".", 1)
        is_bn = module.rsplit(".", 1)[-1].startswith(("bn", "pre_conv_bn", "resnet0_bn", "resnet1_bn"))
        if name == "num_batches_tracked":
            state[key] = torch.tensor([720000.0])
        elif name == "running_var" or (is_bn and name == "weight"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif name in ("running_mean", "bias"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
    return state


def sv_yaml(filters: list[int], blocks: list[int], pool: int, emb: int, vocab: int, n_mels: int = 80) -> dict:
    """An sv.yaml as the published one (FunASR training config), with a short token_list."""
    return {
        "input_size": None,
        "specaug": None,
        "normalize": None,
        "init": None,
        "model": "espnet",
        "model_conf": {},
        "encoder": "resnet34",
        "encoder_conf": {
            "use_head_conv": True,
            "batchnorm_momentum": 0.5,
            "use_head_maxpool": False,
            "num_nodes_pooling_layer": pool,
            "layers_in_block": blocks,
            "filters_in_block": filters,
        },
        "pooling_type": "statistic",
        "decoder": "dense",
        "decoder_conf": {"num_nodes_resnet1": emb, "num_nodes_last_layer": emb, "batchnorm_momentum": 0.5},
        "frontend": "wav_frontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "povey",
            "n_mels": n_mels,
            "frame_length": 25,
            "frame_shift": 10,
            "filter_length_min": -1,
            "filter_length_max": -1,
            "lfr_m": 1,
            "lfr_n": 1,
        },
        "log_interval": 50,
        "token_list": [f"S{i:04d}" for i in range(vocab)],
    }


def write_model_dir(
    directory: Path, seed: int = 0, weights_name: str = "sv.pb", config_json: bool = True, **overrides: object
) -> Path:
    """A ModelScope x-vector directory with the tiny network (or ``overrides``)."""
    spec = {**TINY, **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    layout = funasr_layout(spec["filters"], spec["blocks"], spec["pool"], spec["emb"], spec["vocab"])  # type: ignore[arg-type]
    torch.save(make_state_dict(layout, seed), directory / weights_name)
    cfg = sv_yaml(spec["filters"], spec["blocks"], spec["pool"], spec["emb"], spec["vocab"], spec["n_mels"])  # type: ignore[arg-type]
    (directory / "sv.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    if config_json:
        meta = {
            "framework": "pytorch",
            "task": "speaker-verification",
            "model": {
                "type": "generic-sv",
                "model_config": {
                    "type": "pytorch",
                    "code_base": "funasr",
                    "mode": "sv",
                    "lang": "zh-cn",
                    "batch_size": 1,
                    "sv_model_name": weights_name,
                    "sv_model_config": "sv.yaml",
                },
            },
            "pipeline": {"type": "sv-inference"},
        }
        (directory / "configuration.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return directory


def golden_waveform(n: int = 24001) -> np.ndarray:
    """Test signal: two chirps plus seeded noise, float32 in [-1, 1), odd length."""
    t = np.arange(n) / 16000.0
    x = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.2 * np.sin(2 * np.pi * (1500 - 400 * t) * t)
    x += 0.05 * np.random.default_rng(7).standard_normal(n)
    return x.astype(np.float32)
