"""Explorer helpers that need no window: config drafts, field docs, plot decimation, frame clock."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from core.api import ConfigError, EvaluateConfig, VisionTrainConfig
from core.stages import app_stages
from explorer.jobs import MetricHistory
from explorer.panels.config_form import config_from_draft, draft_from_config, field_docs
from explorer.panels.widgets import decimate
from explorer.profiler import FrameClock, rss_mb


def test_config_drafts_round_trip_every_stage() -> None:
    for spec in app_stages():
        config = spec.config_cls()
        draft = draft_from_config(config)
        assert all(not isinstance(v, Path) for v in draft.values())
        assert config_from_draft(spec.config_cls, draft) == config
        import json

        assert json.loads(json.dumps(draft)) == draft  # drafts are saved with the app's settings


def test_nested_configs_are_edited_as_nested_drafts() -> None:
    from core.api import ControllerTrainConfig, IterateConfig
    from explorer.panels.config_form import merge_draft

    draft = draft_from_config(IterateConfig())
    assert isinstance(draft["train_controller"], dict) and draft["train_controller"]["generations"] == 300
    merge_draft(draft, {"rounds": 3, "train_controller": {"generations": 7, "nope": 1, "population": "x"}})
    assert draft["rounds"] == 3 and draft["train_controller"]["population"] == 64  # wrong type: kept
    config = config_from_draft(IterateConfig, draft)
    assert isinstance(config.train_controller, ControllerTrainConfig)
    assert config.train_controller.generations == 7 and config.train_memory.epochs == 5
    draft["train_controller"]["generations"] = 0
    with pytest.raises(ConfigError, match="generations"):
        config_from_draft(IterateConfig, draft)  # the nested config validates too


def test_tuple_fields_are_edited_as_text() -> None:
    from core.api import DivergenceConfig

    draft = draft_from_config(DivergenceConfig())
    assert draft["horizons"] == "1, 10, 30, 100"
    draft["horizons"] = "5 20,50"
    assert config_from_draft(DivergenceConfig, draft).horizons == (5, 20, 50)
    draft["horizons"] = "5, x"
    with pytest.raises(ValueError):
        config_from_draft(DivergenceConfig, draft)


def test_config_from_draft_validates() -> None:
    draft = draft_from_config(VisionTrainConfig())
    draft.update(epochs=0)
    with pytest.raises(ConfigError):
        config_from_draft(VisionTrainConfig, draft)
    draft.update(epochs=3, out="x/v.safetensors", lr=None)
    assert config_from_draft(VisionTrainConfig, draft).out == Path("x/v.safetensors")
    assert config_from_draft(EvaluateConfig, {"vision": None}).vision is None


def test_field_docs_are_the_dataclass_docstrings() -> None:
    docs = field_docs(VisionTrainConfig)
    assert docs["epochs"] == "Passes over the training frames."
    assert set(docs) >= {"data_dir", "out", "model", "phase", "batch_size"}


def test_decimate_keeps_shape_and_means() -> None:
    xs, ys = decimate(np.arange(10, dtype=np.float32))
    assert xs.tolist() == ys.tolist() == list(range(10))
    xs, ys = decimate(np.arange(601, dtype=np.float32), 200)
    assert len(xs) == len(ys) <= 200 and ys[-1] == pytest.approx(xs[-1])
    assert decimate(np.zeros(0, np.float32))[0].shape == (0,)


def test_metric_history_stays_bounded() -> None:
    history = MetricHistory()
    for step in range(10_000):
        history.add(step, {"m": float(step)})
    xs, ys = history.arrays("m")
    assert len(xs) < 4000 and xs[0] == 0 and xs[-1] == 9999 and np.array_equal(xs, ys)


def test_frame_clock_breakdown() -> None:
    clock = FrameClock(capacity=8)
    for _ in range(12):
        with clock.section("model"):
            time.sleep(0.002)
        clock.end_frame()
    b = clock.breakdown()
    assert clock.frames == 11 and b["model"] >= 1.5 and b["frame"] >= b["model"] and b["gui"] >= 0
    assert 0 <= b["cpu"] < b["frame"]  # sleeping takes no CPU
    with clock.stage("decode"):
        time.sleep(0.002)
    clock.end_frame()
    stages = clock.stages()
    assert stages["decode"] >= 1.5 / 8 and "per stage" in clock.report() and "decode" in clock.report()
    assert "fps" in clock.report() and rss_mb() > 10


def test_file_picker_lists_directories_first_then_matching_files(tmp_path: Path) -> None:
    from explorer.panels.file_picker import Entry, list_directory

    for name in ("b.safetensors", "A.SAFETENSORS", "c.npz", ".hidden.safetensors"):
        (tmp_path / name).write_bytes(b"")
    for name in ("zeta", "Alpha", ".git"):
        (tmp_path / name).mkdir()
    entries, more = list_directory(tmp_path, (".safetensors",))
    assert entries == [Entry("Alpha", True), Entry("zeta", True), Entry("A.SAFETENSORS", False),
                       Entry("b.safetensors", False)] and more == 0  # fmt: skip
    assert [e.name for e in list_directory(tmp_path)[0]] == ["Alpha", "zeta", "A.SAFETENSORS", "b.safetensors",
                                                              "c.npz"]  # fmt: skip
    assert list_directory(tmp_path, directories_only=True)[0] == [Entry("Alpha", True), Entry("zeta", True)]
    assert list_directory(tmp_path, limit=3) == (entries[:2] + [Entry("A.SAFETENSORS", False)], 2)
    with pytest.raises(OSError):
        list_directory(tmp_path / "c.npz")


def test_profile_report_parses_back_to_its_breakdown() -> None:
    from explorer.profiler import parse_report

    clock = FrameClock()
    for _ in range(6):
        with clock.section("model"):
            time.sleep(0.002)
        clock.end_frame()
    b = clock.breakdown(skip=1)
    figures = parse_report("app output before\n" + clock.report(skip=1) + "\nwrote out.png\n")
    for key in ("fps", "frame", "frame_p95", "model", "env", "gui", "cpu"):
        assert figures[key] == pytest.approx(b[key], abs=0.051), key
    assert figures["model"] >= 2.0
    with pytest.raises(ValueError, match="no --profile report"):
        parse_report("wrote out.png")
