"""FunASR x-vector: ModelScope directory layout, FunASR key names, and golden embeddings.

Checkpoints here are written the way ModelScope publishes
``damo/speech_xvector_sv-zh-cn-cnceleb-16k-spk3465-pytorch`` (configuration.json, sv.yaml,
sv.pb = torch.save of a FunASR state_dict, float-vector ``num_batches_tracked``). Key names
and shapes are spelled out below from FunASR's layout, independently of diar's modules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml
from xvector_helpers import TINY, funasr_layout, golden_waveform, sv_yaml, write_model_dir

from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS, Embedder
from diar.models.xvector import (
    DEFAULT_MODEL_ID,
    XVectorEmbedder,
    XVectorParams,
    resolve_model_dir,
)

# Produced by FunASR 0.8.8's own forward (funasr.bin.sv_infer.Speech2Xvector, frontend
# dither set to 0, torchaudio's kaldi.fbank replaced by kaldi-native-fbank with the same
# options) on the directory write_model_dir(tmp, seed=0) and golden_waveform(24001) /
# golden_waveform(8000): a scratch check outside this repository, since FunASR is not a
# dependency. diar matched it there to a max abs difference of 0.0 on these inputs.
GOLDEN_24001 = np.array([12.68548, -13.80357, -7.746487, 16.69834, -6.106737, -15.81764], dtype=np.float32)
GOLDEN_8000 = np.array([12.08883, -12.49644, -11.76588, 14.53689, -11.51166, -14.44554], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("xvector") / "model", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> XVectorEmbedder:
    return XVectorEmbedder(str(tiny_dir))


def test_published_layout_has_238_keys_and_6_47m_parameters() -> None:
    layout = funasr_layout([32, 64, 128, 256], [3, 4, 6, 3], 256, 256, 3465)
    assert len(layout) == 238
    buffers = ("num_batches_tracked", "running_mean", "running_var")
    params = sum(int(np.prod(s)) for k, s in layout.items() if not k.endswith(buffers))
    assert round(params / 1e6, 2) == 6.47
    assert round((params - 3465 * 256) / 1e6, 2) == 5.59


def test_defaults_are_the_published_model() -> None:
    cfg = sv_yaml([32, 64, 128, 256], [3, 4, 6, 3], 256, 256, 3465)
    assert XVectorParams.from_sv_config(cfg) == XVectorParams()
    p = XVectorParams()
    assert (p.sample_rate, p.num_mel_bins, p.window, p.embedding_dim) == (16000, 80, "povey", 256)


def test_loads_funasr_layout_through_registry(tiny_dir: Path) -> None:
    emb = EMBEDDERS.get("xvector")(model_dir=str(tiny_dir), device="cpu", num_threads=1)
    assert isinstance(emb, Embedder)
    assert (emb.sample_rate, emb.dimension, emb.metric) == (16000, TINY["emb"], "cosine")


def test_golden_embedding_matches_funasr(tiny: XVectorEmbedder) -> None:
    got = tiny.embed_utterance(golden_waveform(24001))
    np.testing.assert_allclose(got, GOLDEN_24001, rtol=1e-4, atol=1e-4)
    got = tiny.embed_utterance(golden_waveform(8000))
    np.testing.assert_allclose(got, GOLDEN_8000, rtol=1e-4, atol=1e-4)


def test_batch_equals_utterance_and_masks_cut_padding(tiny: XVectorEmbedder) -> None:
    wav = golden_waveform(32000)
    batch = np.stack([wav[:16000], wav[16000:]])
    out = tiny(batch)
    assert out.shape == (2, TINY["emb"]) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], tiny.embed_utterance(wav[16000:]), rtol=1e-4, atol=1e-4)
    masks = np.ones_like(batch)
    masks[0, 12000:] = 0
    masked = tiny(batch, masks)
    np.testing.assert_allclose(masked[0], tiny.embed_utterance(wav[:12000]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(masked[1], out[1], rtol=1e-5, atol=1e-5)
    assert tiny(np.zeros((0, 16000), np.float32)).shape == (0, TINY["emb"])


def test_embedding_depends_on_weights_and_audio(tmp_path: Path, tiny: XVectorEmbedder) -> None:
    other = XVectorEmbedder(str(write_model_dir(tmp_path / "other", seed=1)))
    wav = golden_waveform(16000)
    assert not np.allclose(other.embed_utterance(wav), tiny.embed_utterance(wav), atol=1e-3)
    assert not np.allclose(tiny.embed_utterance(wav), tiny.embed_utterance(wav[::-1].copy()), atol=1e-3)


def test_sv_pth_and_newer_model_name_key(tmp_path: Path, tiny: XVectorEmbedder) -> None:
    wav = golden_waveform(8000)
    ref = tiny.embed_utterance(wav)
    # no configuration.json, checkpoint under the recipe name sv.pth
    pth = write_model_dir(tmp_path / "pth", weights_name="sv.pth", config_json=False)
    np.testing.assert_allclose(XVectorEmbedder(str(pth)).embed_utterance(wav), ref, rtol=1e-6, atol=1e-6)
    # newer ModelScope: model.model_name names the checkpoint
    new = write_model_dir(tmp_path / "new", weights_name="weights.bin")
    (new / "configuration.json").write_text(
        json.dumps({"model": {"model_name": "weights.bin"}}), encoding="utf-8"
    )
    np.testing.assert_allclose(XVectorEmbedder(str(new)).embed_utterance(wav), ref, rtol=1e-6, atol=1e-6)


def test_int_num_batches_tracked_and_missing_key(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    state = torch.load(d / "sv.pb", weights_only=True)
    state = {k: (torch.tensor(5) if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    torch.save(state, d / "sv.pb")
    XVectorEmbedder(str(d))
    del state["encoder.block_1.layer_0.conv_sc.weight"]
    torch.save(state, d / "sv.pb")
    with pytest.raises(
        ModelLoadError, match=r"missing 1 keys \(e.g. encoder.block_1.layer_0.conv_sc.weight\)"
    ):
        XVectorEmbedder(str(d))


def test_config_and_checkpoint_disagree(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    cfg = yaml.safe_load((d / "sv.yaml").read_text())
    cfg["decoder_conf"]["num_nodes_resnet1"] = 7
    (d / "sv.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(
        ModelLoadError, match=r"decoder.resnet1_dense.weight has shape \(6, 16\), sv.yaml implies \(7, 16\)"
    ):
        XVectorEmbedder(str(d))


def test_unsupported_config_is_named(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    cfg = yaml.safe_load((d / "sv.yaml").read_text())
    cfg["frontend_conf"]["lfr_m"] = 7
    (d / "sv.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ModelLoadError, match="lfr_m"):
        XVectorEmbedder(str(d))


def test_missing_files_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=re.escape("has no sv.yaml")):
        XVectorEmbedder(str(tmp_path))
    d = write_model_dir(tmp_path / "m")
    (d / "sv.pb").unlink()
    with pytest.raises(ModelLoadError, match=re.escape("no checkpoint: expected one of sv.pb, sv.pth")):
        XVectorEmbedder(str(d))
    (d / "sv.pb").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read x-vector checkpoint"):
        XVectorEmbedder(str(d))
    with pytest.raises(ModelLoadError, match="does not exist"):
        XVectorEmbedder(str(tmp_path / "nowhere" / "x"))


def test_model_id_offline_says_what_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(__import__("sys").modules, "modelscope", None)  # as if not installed
    with pytest.raises(ModelLoadError) as err:
        resolve_model_dir(DEFAULT_MODEL_ID)
    msg = str(err.value)
    assert "modelscope is not installed" in msg
    assert "configuration.json, sv.yaml and sv.pb" in msg and "--model-dir DIR" in msg
    assert str(tmp_path / "cache" / "hub" / DEFAULT_MODEL_ID) in msg
    # a copy in the ModelScope cache is found without the modelscope package
    cached = write_model_dir(tmp_path / "cache" / "hub" / DEFAULT_MODEL_ID)
    assert resolve_model_dir(DEFAULT_MODEL_ID) == cached


def test_too_short_input(tiny: XVectorEmbedder) -> None:
    with pytest.raises(ValueError, match="shorter than 400"):
        tiny.embed_utterance(np.zeros(399, np.float32))
    assert tiny.embed_utterance(np.zeros(400, np.float32)).shape == (TINY["emb"],)


def test_embeddings_round_trip_kaldiio(tmp_path: Path, tiny: XVectorEmbedder) -> None:
    vec = tiny.embed_utterance(golden_waveform(8000))
    kaldiio.save_ark(str(tmp_path / "x.ark"), {"utt": vec}, scp=str(tmp_path / "x.scp"))
    np.testing.assert_array_equal(kaldiio.load_scp(str(tmp_path / "x.scp"))["utt"], vec)


def test_model_id_through_modelscope_snapshot_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With modelscope installed, an id missing from the cache goes to its snapshot_download."""
    import sys
    import types

    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "cache"))
    downloaded = write_model_dir(tmp_path / "downloaded")
    calls: list[str] = []

    def snapshot_download(model_id: str) -> str:
        calls.append(model_id)
        if model_id == DEFAULT_MODEL_ID:
            return str(downloaded)
        raise ConnectionError("hub unreachable")

    hub = types.ModuleType("modelscope.hub.snapshot_download")
    hub.snapshot_download = snapshot_download  # type: ignore[attr-defined]
    for name in ("modelscope", "modelscope.hub"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "modelscope.hub.snapshot_download", hub)
    assert resolve_model_dir(DEFAULT_MODEL_ID) == downloaded
    with pytest.raises(ModelLoadError, match=r"could not download it \(ConnectionError: hub unreachable\)"):
        resolve_model_dir("damo/another-model")
    assert calls == [DEFAULT_MODEL_ID, "damo/another-model"]
