"""Every stage run through the registry logs its metrics beside its output, and the log reads back (issue 16)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from core.api import EncodeConfig, MemoryTrainConfig, Progress
from core.errors import DreamExplorerError
from core.metrics_log import metrics_log_path, read_metrics_log
from core.stages import stage
from explorer.jobs import JobRunner


def _curves(reports: list[Progress]) -> dict[str, tuple[list[float], list[float]]]:
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for p in reports:
        for k, v in p.metrics.items():
            xs, ys = curves.setdefault(k, ([], []))
            xs.append(float(p.step))
            ys.append(v)
    return curves


def test_a_stage_logs_every_reported_metric_and_the_log_reads_back(
    real_episodes: Path, tiny_world_model: dict[str, Path], tmp_path: Path
) -> None:
    latents = tmp_path / "latents.npz"
    encode = EncodeConfig(data_dir=real_episodes, vision=tiny_world_model["vision"], out=latents)
    stage("encode").run(encode, on_progress=lambda p: None, should_stop=threading.Event())
    config = MemoryTrainConfig(latents=latents, out=tmp_path / "memory.safetensors", epochs=2, seq_len=20,
                               batch_size=2, val_fraction=0.34)  # fmt: skip
    reports: list[Progress] = []
    stage("train-memory").run(config, on_progress=reports.append, should_stop=threading.Event())
    path = metrics_log_path(config)
    assert path == tmp_path / "memory.metrics.jsonl"
    logged = read_metrics_log(path)
    assert logged == _curves(reports) and "memory/train/loss" in logged and "memory/val/nll" in logged
    job = JobRunner(stage("memory"), "thread")
    job.load_history(path)
    assert job.history.arrays("memory/train/loss")[1].tolist() == logged["memory/train/loss"][1]
    # a new run starts the log afresh
    stage("train-memory").run(config, on_progress=lambda p: None, should_stop=threading.Event())
    assert read_metrics_log(path) == logged  # same seed, same curves, not twice as many points


def test_a_cut_last_line_is_skipped_and_a_garbled_one_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "x.metrics.jsonl"
    line = '{"stage": "memory", "step": 3, "total": 9, "time": 0.1, "metrics": {"a": 1.5, "b": null}}\n'
    path.write_text(line + line.replace("3", "4") + '{"stage": "mem')
    assert read_metrics_log(path) == {"a": ([3.0, 4.0], [1.5, 1.5])}
    path.write_text("not json\n" + line)
    with pytest.raises(DreamExplorerError, match=r"x.metrics.jsonl:1 is not a metrics log line"):
        read_metrics_log(path)


def test_where_each_kind_of_output_logs() -> None:
    assert metrics_log_path(stage("collect").config_cls(out_dir=Path("data/a"))) == Path("data/a/metrics.jsonl")
    assert metrics_log_path(stage("train-vision").config_cls(out=Path("runs/v.safetensors"))) == Path(
        "runs/v.metrics.jsonl"
    )
    assert metrics_log_path(stage("evaluate").config_cls()) is None and metrics_log_path({"out": 3}) is None


def test_the_learning_curve_script_reads_real_checks_against_real_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util
    import json

    path = Path(__file__).resolve().parent.parent / "scripts" / "learning_curve.py"
    spec = importlib.util.spec_from_file_location("learning_curve", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "learning_curve", script)  # its dataclasses look their module up
    spec.loader.exec_module(script)
    log = tmp_path / "c.metrics.jsonl"
    lines = [(1, 9000, None), (2, 16000, 120.5), (3, 25000, None), (4, 41000, 80.0), (5, 60000, 300.25)]
    log.write_text("".join(
        json.dumps({"stage": "controller", "step": g, "total": 5, "time": 1.0, "metrics": {
            "controller/real_env_steps": float(n), **({} if r is None else {"controller/real_return": r})}}) + "\n"
        for g, n, r in lines
    ))  # fmt: skip
    assert script.main([f"{log}:real", "--budgets", "20000", "50000", "100000"]) == 0
    out = capsys.readouterr().out
    assert "| real | 4 | 41,000 | 80.0 | 120.5 |" in out  # the best so far stays the earlier check
    assert "| real | 120.5 | 120.5 | 300.2 |" in out  # best within 20,000 / 50,000 / 100,000 real steps
    (tmp_path / "none.metrics.jsonl").write_text(json.dumps({"step": 1, "metrics": {"controller/sigma": 0.1}}) + "\n")
    assert script.main([str(tmp_path / "none.metrics.jsonl")]) == 2
    assert "no real check" in capsys.readouterr().err
