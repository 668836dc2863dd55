"""How train-controller chooses the controller it keeps from its real checks: stopping once the checks stop
improving (--check-patience) and rechecking the best checked snapshots on more tracks (--recheck-top).

The real checks are scripted (no CarRacing): the tests assert which snapshot is kept and what the run records.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.checkpoint import load_model, load_resume_state, resume_path
from core.errors import ConfigError
from core.progress import Progress
from core.train.controller import train_controller
from core.train.controller_setup import dream_evaluator
from tests.controller_world import dream_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # world: the tiny V, M and latents (tests/conftest.py)


class ScriptedChecks:
    """Stands in for ``real_returns``: each real check returns the next scripted mean; a recheck (seeds after
    the checks') returns the scripted mean of the checked generation whose parameters it drives."""

    def __init__(self, checks: list[float], rechecks: dict[int, float]) -> None:
        self.checks, self.rechecks = list(checks), rechecks
        self.checked: list[tuple[int, np.ndarray]] = []  # (check number, params)
        self.recheck_seeds: list[list[int]] = []

    def __call__(self, executor: object, params: np.ndarray, seeds: list[int], stop: object):
        from core.train.fitness import REAL_CHECK_SEED_START

        if seeds[0] == REAL_CHECK_SEED_START:
            self.checked.append((len(self.checked) + 1, params.copy()))
            return [self.checks.pop(0)] * len(seeds), 7 * len(seeds)
        self.recheck_seeds.append(seeds)
        number = next(n for n, p in self.checked if np.array_equal(p, params))
        return [self.rechecks[number]] * len(seeds), 7 * len(seeds)


def test_check_patience_stops_and_recheck_keeps_the_best_over_all_tracks(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.train.controller as stage

    # checks 10, 50 (kept), 40, 30: two in a row below 50 -> stop after generation 4; the rechecks of the two best
    # (50 and 40) on 3 more tracks return 0 and 60: over all 4 tracks 12.5 and 55.0, so generation 3's is kept
    script = ScriptedChecks([10.0, 50.0, 40.0, 30.0, 99.0], {2: 0.0, 3: 60.0})
    monkeypatch.setattr(stage, "real_returns", script)
    monkeypatch.setattr(stage, "make_executor", lambda *a, **k: SimpleNamespace(close=lambda: None))
    out = tmp_path / "c.safetensors"
    reports: list[Progress] = []
    config = dream_config(world, out, generations=10, real_check_every=1, real_check_episodes=1, check_patience=2,
                     recheck_top=2, recheck_episodes=3)  # fmt: skip
    result = train_controller(config, on_progress=reports.append)
    assert not result.cancelled and [g for g, _ in result.history] == [1, 2, 3, 4]
    assert any("stopping: 2 real checks in a row" in p.message for p in reports)
    assert script.recheck_seeds == [[900_001, 900_002, 900_003]] * 2
    kept = load_model(out, "controller")
    flat = kept.get_flat()  # type: ignore[operator]
    assert np.allclose(flat, script.checked[2][1], atol=1e-6) and not np.allclose(flat, script.checked[1][1])
    assert kept.checkpoint_metrics["controller/real_return"] == pytest.approx(55.0)  # type: ignore[attr-defined]
    assert kept.checkpoint_extra["generation"] == 3 and kept.checkpoint_extra["kept_real_tracks"] == 4  # type: ignore[attr-defined]
    # 4 checks of 1 track and 2 rechecks of 3, 7 steps each
    assert result.metrics["controller/real_env_steps"] == 7 * (4 + 6)
    state = load_resume_state(resume_path(out))
    assert [c["generation"] for c in state["checked"]] == [1, 2, 3, 4] and state["stale_checks"] == 2


def test_check_init_checks_the_start_first_and_keeps_it_unless_beaten(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.train.controller as stage

    start = tmp_path / "start.safetensors"
    train_controller(dream_config(world, start, generations=1, real_check_every=0))
    start_flat = load_model(start, "controller").get_flat()  # type: ignore[operator]
    # the start checks 80, generations 1-3 check 50, 60, 70: none beats it, so the start is what the run keeps
    script = ScriptedChecks([80.0, 50.0, 60.0, 70.0], {})
    monkeypatch.setattr(stage, "real_returns", script)
    monkeypatch.setattr(stage, "make_executor", lambda *a, **k: SimpleNamespace(close=lambda: None))
    out = tmp_path / "c.safetensors"
    reports: list[Progress] = []
    config = dream_config(world, out, generations=3, real_check_every=1, real_check_episodes=1, init_controller=start,
                          check_init=True)  # fmt: skip
    result = train_controller(config, on_progress=reports.append)
    assert len(script.checked) == 4 and np.allclose(script.checked[0][1], start_flat, atol=1e-6)
    assert sum("check of the initial controller: 80.0" in p.message for p in reports) == 1
    kept = load_model(out, "controller")
    assert np.allclose(kept.get_flat(), start_flat, atol=1e-6)  # type: ignore[operator]
    assert kept.checkpoint_extra["generation"] == 0  # type: ignore[attr-defined]
    assert kept.checkpoint_metrics["controller/real_return"] == pytest.approx(80.0)  # type: ignore[attr-defined]
    assert result.metrics["controller/real_env_steps"] == 7 * 4  # the start's check counts as real experience
    # without --check-init the same checks keep generation 3's (70), below the start's own 80
    script = ScriptedChecks([50.0, 60.0, 70.0], {})
    monkeypatch.setattr(stage, "real_returns", script)
    train_controller(dataclasses.replace(config, check_init=False, out=tmp_path / "c2.safetensors"))
    assert load_model(tmp_path / "c2.safetensors", "controller").checkpoint_extra["generation"] == 3  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="check_init needs init_controller"):
        dream_config(world, tmp_path / "c3.safetensors", real_check_every=1, check_init=True)


def test_recheck_and_patience_need_real_checks(world: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need real checks"):
        dream_config(world, tmp_path / "c.safetensors", real_check_every=0, recheck_top=2)


@pytest.mark.parametrize("candidate", ["mean", "best"])
def test_check_candidate_drives_the_cmaes_mean_or_the_best(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, candidate: str
) -> None:
    import core.train.controller as stage

    asked: list[np.ndarray] = []  # every generation's candidates
    means: list[np.ndarray] = []  # the mean after every generation's update

    class RecordingCMAES(stage.CMAES):
        def ask(self) -> np.ndarray:
            asked.append(super().ask())
            return asked[-1]

        def tell(self, candidates: np.ndarray, returns: np.ndarray) -> None:
            super().tell(candidates, returns)
            means.append(self.mean)

    script = ScriptedChecks([10.0, 30.0, 20.0], {})
    monkeypatch.setattr(stage, "CMAES", RecordingCMAES)
    monkeypatch.setattr(stage, "real_returns", script)
    monkeypatch.setattr(stage, "make_executor", lambda *a, **k: SimpleNamespace(close=lambda: None))
    out = tmp_path / "c.safetensors"
    reports: list[Progress] = []
    config = dream_config(
        world, out, generations=3, real_check_every=1, real_check_episodes=1, check_candidate=candidate
    )
    train_controller(config, on_progress=reports.append)
    assert len(script.checked) == 3
    for g, (_, params) in enumerate(script.checked):
        is_candidate = any(np.array_equal(params, c) for c in asked[g])
        assert np.array_equal(params, means[g]) == (candidate == "mean")
        assert is_candidate == (candidate == "best")
    # the kept controller is the second check's (30), and the reports name what was checked
    flat = load_model(out, "controller").get_flat()  # type: ignore[operator]
    assert np.allclose(flat, script.checked[1][1], atol=1e-6)
    name = "CMA-ES mean" if candidate == "mean" else "generation's best"
    assert sum(f"real check of the {name}: 30.0" in p.message for p in reports) == 1


def test_check_candidate_must_be_best_or_mean(world: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="check_candidate must be best or mean"):
        dream_config(world, tmp_path / "c.safetensors", check_candidate="median")


def test_dream_checks_choose_the_snapshot_without_a_real_step(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.train.controller as stage
    from core.envs.world_model import WorldModel
    from core.train.fitness import dream_check_plan

    def no_real(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dream-checked dream run stepped (or prepared) the real env")

    monkeypatch.setattr(stage, "make_executor", no_real)
    monkeypatch.setattr(stage, "real_returns", no_real)
    out = tmp_path / "c.safetensors"
    reports: list[Progress] = []
    config = dream_config(world, out, generations=4, real_check_every=1, check_in="dream", dream_check_rollouts=5)
    result = train_controller(config, on_progress=reports.append)
    checks = [m["controller/dream_check_return"] for _, m in result.history]
    assert len(checks) == 4 and result.metrics["controller/real_env_steps"] == 0
    assert sum("dream check of the generation's best" in p.message and "on 5 dreams" in p.message for p in reports) == 4
    kept = load_model(out, "controller")
    assert kept.checkpoint_metrics["controller/dream_check_return"] == pytest.approx(max(checks))  # type: ignore[attr-defined]
    assert kept.checkpoint_extra["generation"] == 1 + int(np.argmax(checks))  # type: ignore[attr-defined]
    # the check is the kept controller's mean return over the run's fixed check dreams, whenever it is re-run
    wm = WorldModel.load(config.vision, config.memory)
    evaluator = dream_evaluator(config, wm.require_memory(), kept.config, lambda p: None)
    plan = dream_check_plan(config.seed, 5, len(evaluator.starts or ()))
    again = evaluator.rollout_returns(kept.get_flat()[None], plan)  # type: ignore[operator]
    assert again is not None and float(again.mean()) == pytest.approx(max(checks), rel=1e-4)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"evaluator": "real"}, "check_in dream needs evaluator dream"), ({"recheck_top": 2}, "recheck_top drives real")],
)
def test_dream_checks_refuse_what_needs_reality(
    world: SimpleNamespace, tmp_path: Path, kw: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        dream_config(world, tmp_path / "c.safetensors", real_check_every=1, check_in="dream", **kw)


def test_a_stop_during_a_real_check_abandons_its_episodes(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop (Ctrl-C, SIGTERM, the app's Cancel) while a real check runs must not wait for its episodes: the check
    asks the executor to abandon running tasks, and the stage terminates the executor instead of joining it."""
    import threading

    import core.train.controller as stage
    from core.train.fitness import real_returns

    calls: list[str] = []
    kwargs_seen: list[dict] = []

    class Executor:
        def map_unordered(self, fn: object, items: list, **kwargs: object):
            kwargs_seen.append(kwargs)
            kwargs["should_stop"].set()  # type: ignore[attr-defined]  # the stop arrives while the episodes run
            return iter(())

        def close(self) -> None:
            calls.append("close")

        def terminate(self) -> None:
            calls.append("terminate")

    stop = threading.Event()
    monkeypatch.setattr(stage, "make_executor", lambda *a, **k: Executor())
    config = dream_config(world, tmp_path / "c.safetensors", generations=4, real_check_every=1, real_check_episodes=2)
    result = train_controller(config, should_stop=stop)
    assert result.cancelled and result.checkpoint is not None  # generation 1 kept, its check dropped
    assert kwargs_seen == [{"should_stop": stop, "abandon_on_stop": True}]
    assert calls == ["terminate"]
    assert real_returns(Executor(), np.zeros(3), [1, 2], threading.Event()) is None  # type: ignore[arg-type]
