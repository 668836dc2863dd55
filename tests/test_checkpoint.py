"""Checkpoints: self-describing round trip, atomic writes, bad files give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import (
    load_model,
    load_resume_state,
    read_checkpoint,
    resume_path,
    save_checkpoint,
    save_resume_state,
)
from core.errors import CheckpointError
from core.models import MDNRNN, ConvVAE, MDNRNNConfig, VAEConfig


def test_round_trip_rebuilds_model_from_file_alone(tmp_path: Path) -> None:
    torch.manual_seed(1)
    m = MDNRNN(MDNRNNConfig(hidden_dim=64, n_gaussians=3))
    path = save_checkpoint(tmp_path / "m.safetensors", m, kind="mdnrnn", config=m.config, metrics={"a/b": 1.5})
    loaded = load_model(path)
    assert isinstance(loaded, MDNRNN) and loaded.config == m.config
    for (k, v), (k2, v2) in zip(m.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    ckpt = read_checkpoint(path)
    assert ckpt.kind == "mdnrnn" and ckpt.metrics == {"a/b": 1.5} and ckpt.format_version == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_half_storage_halves_size(tmp_path: Path) -> None:
    v = ConvVAE(VAEConfig())
    full = save_checkpoint(tmp_path / "f.safetensors", v, kind="conv_vae", config=v.config)
    half = save_checkpoint(tmp_path / "h.safetensors", v, kind="conv_vae", config=v.config, half=True)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = load_model(half)
    w = loaded.state_dict()["fc_mu.weight"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, v.state_dict()["fc_mu.weight"], atol=1e-3, rtol=1e-3)


def test_truncated_checkpoint_gives_clear_error(tmp_path: Path) -> None:
    v = ConvVAE(VAEConfig())
    path = save_checkpoint(tmp_path / "v.safetensors", v, kind="conv_vae", config=v.config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "x.safetensors").write_text("hello")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    pickle_like = tmp_path / "p.safetensors"
    torch.save({"a": 1}, pickle_like)
    with pytest.raises(CheckpointError):
        load_model(pickle_like)


def test_wrong_kind_is_refused(tmp_path: Path) -> None:
    v = ConvVAE(VAEConfig())
    path = save_checkpoint(tmp_path / "v.safetensors", v, kind="conv_vae", config=v.config)
    with pytest.raises(CheckpointError, match="expected mdnrnn"):
        load_model(path, "mdnrnn")


def test_resume_state_refuses_arbitrary_pickles(tmp_path: Path) -> None:
    p = save_resume_state(resume_path(tmp_path / "a.safetensors"), {"epoch": 3, "t": torch.ones(2)})
    assert p.name == "a.resume.pt"
    assert load_resume_state(p)["epoch"] == 3

    bad = tmp_path / "evil.resume.pt"
    torch.save({"obj": Path("/etc/passwd")}, bad)  # any non-allow-listed class
    with pytest.raises(CheckpointError):
        load_resume_state(bad)
