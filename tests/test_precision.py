"""bfloat16 only where this CPU runs it faster: the probe, and the stages that ask it (train-vision, the dream of
train-controller)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import core.precision as precision
import core.train.vision as vision_stage
from core.checkpoint import load_model
from core.config import VisionTrainConfig
from core.models.controller import ControllerConfig
from core.models.mdnrnn import MDNRNN
from core.precision import Bf16Probe, probe_bf16
from core.progress import Progress
from core.train.controller_setup import dream_evaluator
from core.train.loop import EpochLoop
from tests.controller_world import dream_config


def test_the_probe_times_both_precisions_once_per_process() -> None:
    probe = probe_bf16("matmul")
    assert 0 < probe.float32_ms < math.inf and probe.bfloat16_ms > 0
    assert probe_bf16("matmul") is probe  # measured once, then cached
    with pytest.raises(ValueError, match="unknown bfloat16 workload 'conv'"):
        probe_bf16("conv")  # type: ignore[arg-type]


def test_bfloat16_pays_only_when_faster() -> None:
    emulated = Bf16Probe("matmul", 2.2, 129.8)  # an AVX2-only CPU (this project's machine, session 41)
    assert not emulated.pays
    assert emulated.describe() == (
        "bfloat16 off for matmul on this CPU (float32 2.2 ms, bfloat16 129.8 ms per probe step)"
    )
    assert Bf16Probe("conv_train", 4.0, 2.0).pays and not Bf16Probe("conv_train", 4.0, 4.0).pays


def _fake_probe(pays: bool) -> Any:  # noqa: ANN401
    return lambda workload: Bf16Probe(workload, 1.0, 0.5 if pays else 10.0)


def test_train_vision_autocasts_only_where_bfloat16_pays(
    real_episodes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[bool] = []

    class Spy(EpochLoop):
        def __init__(self, **kw: Any) -> None:  # noqa: ANN401
            used.append(kw["bf16"])
            super().__init__(**kw)

    monkeypatch.setattr(vision_stage, "EpochLoop", Spy)
    cfg = dict(data_dir=real_episodes, epochs=1, batch_size=16, epoch_frames=16, seed=0)
    for pays in (False, True):
        monkeypatch.setattr(precision, "probe_bf16", _fake_probe(pays))
        reports: list[Progress] = []
        out = tmp_path / f"v_{pays}.safetensors"
        vision_stage.train_vision(VisionTrainConfig(out=out, **cfg), on_progress=reports.append)  # type: ignore[arg-type]
        state = "on" if pays else "off"
        assert any(r.message.startswith(f"bfloat16 {state} for conv_train") for r in reports)
    monkeypatch.setattr(precision, "probe_bf16", lambda w: pytest.fail("--no-bf16 must not probe"))
    no_bf16 = VisionTrainConfig(out=tmp_path / "v.safetensors", bf16=False, **cfg)  # type: ignore[arg-type]
    vision_stage.train_vision(no_bf16)
    assert used == [False, True, False]


def test_the_dream_evaluator_uses_bfloat16_only_where_it_pays(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = load_model(world.memory, "mdnrnn")
    assert isinstance(memory, MDNRNN)
    for pays in (False, True):
        monkeypatch.setattr(precision, "probe_bf16", _fake_probe(pays))
        reports: list[Progress] = []
        config = dream_config(world, tmp_path / "c.safetensors")
        evaluator = dream_evaluator(config, memory, ControllerConfig(memory.config.z_dim, 0), reports.append)
        assert evaluator.bf16 is pays
        assert any(r.message.startswith("bfloat16 ") for r in reports)
    monkeypatch.setattr(precision, "probe_bf16", lambda w: pytest.fail("--no-dream-bf16 must not probe"))
    config = dream_config(world, tmp_path / "c.safetensors", dream_bf16=False)
    assert dream_evaluator(config, memory, ControllerConfig(memory.config.z_dim, 0), print).bf16 is False
