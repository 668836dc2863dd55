"""Track-seed ranges (what may inform what) and the local executor's results, errors and crashes."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from core.config import CollectConfig
from core.data.seeds import (
    DEVELOPMENT,
    FINAL,
    FINAL_BLOCKS_USED,
    MODEL_SELECTION,
    TRAINING,
    next_final_block,
)
from core.errors import ConfigError
from core.evaluate import EVAL_SEED_START, EvaluateConfig
from core.parallel import TaskFailed, WorkerCrashed, make_executor
from core.train.controller import ControllerTrainConfig
from core.train.fitness import (
    REAL_CHECK_SEED_START,
    generation_plan,
    real_check_seeds,
)
from core.train.iterate import IterateConfig

ASSET_RESULTS = Path(__file__).resolve().parent.parent / "assets" / "results"


def test_evaluation_seeds_never_overlap_training_seeds() -> None:
    for seed in (0, 1, 12345):
        for g in range(0, 2000, 7):
            plan = generation_plan(seed, g, 16, 100)
            assert plan.track_seeds.min() >= 0 and plan.track_seeds.max() < REAL_CHECK_SEED_START
    checks = real_check_seeds(100_000)
    assert checks[0] == REAL_CHECK_SEED_START and checks[-1] < EVAL_SEED_START
    assert EvaluateConfig().seed >= EVAL_SEED_START
    with pytest.raises(ConfigError):
        EvaluateConfig(seed=EVAL_SEED_START - 1)
    with pytest.raises(ConfigError):
        CollectConfig(seed=EVAL_SEED_START - 5, episodes=10)
    with pytest.raises(ConfigError):
        IterateConfig(collect_seed=REAL_CHECK_SEED_START - 50, episodes=100)
    with pytest.raises(ConfigError):
        ControllerTrainConfig(real_check_episodes=EVAL_SEED_START - REAL_CHECK_SEED_START + 1)


def test_evaluation_stays_within_the_development_or_a_final_range() -> None:
    assert EVAL_SEED_START == DEVELOPMENT.start == MODEL_SELECTION.stop and REAL_CHECK_SEED_START == TRAINING.stop
    EvaluateConfig(seed=DEVELOPMENT.stop - 10, episodes=10)
    EvaluateConfig(seed=FINAL.start, episodes=100)
    for seed, episodes in ((DEVELOPMENT.stop - 5, 10), (3_000_000, 1), (FINAL.start - 1, 2)):
        with pytest.raises(ConfigError, match="development evaluation tracks 1,000,000..1,999,999"):
            EvaluateConfig(seed=seed, episodes=episodes)
    assert {7_000_000, 7_000_100, 7_000_200, 7_000_300, 7_000_400, 7_000_500} <= set(FINAL_BLOCKS_USED)
    # every final block whose per-track results ship in assets/results is recorded as used, and the next one is fresh
    shipped = {int(m) for m in re.findall(r"_final_(\d+)\.json", " ".join(p.name for p in ASSET_RESULTS.iterdir()))}
    assert len(shipped) >= 9 and shipped <= set(FINAL_BLOCKS_USED), sorted(shipped - set(FINAL_BLOCKS_USED))
    assert next_final_block() not in FINAL_BLOCKS_USED and next_final_block() > max(shipped)
    assert 999_999 in MODEL_SELECTION and 1_000_000 not in MODEL_SELECTION and 899_999 in TRAINING


def test_make_figures_never_touches_the_final_range() -> None:
    script = (Path(__file__).resolve().parent.parent / "scripts" / "figures.sh").read_text()
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    seeds = [int(s) for s in re.findall(r"--seed (\d+)", "\n".join(commands))]
    assert len(seeds) >= 4 and all(seed + 100 <= FINAL.start for seed in seeds), seeds


def _fail(shared: object, item: int) -> int:
    raise ValueError(f"bad item {item}")


def _square_or_die(shared: int, item: int) -> int:
    if item < 0:
        os._exit(3)
    return shared + item * item


def _run_until_abandoned(shared: object, item: tuple[str, float]) -> str:
    """Marks that it runs (a file), then waits up to ``item[1]`` seconds for its executor's terminate."""
    from core.parallel import task_abandoned

    Path(item[0]).touch()
    end = time.monotonic() + item[1]
    while time.monotonic() < end:
        if task_abandoned():
            return "abandoned"
        time.sleep(0.05)
    return "ran to its end"


def test_terminate_lets_a_running_task_end_early(tmp_path: Path) -> None:
    """A stopped run's terminate() reaches the task running in a worker (task_abandoned), so the worker process
    exits within seconds instead of after the task's 120 s (the interpreter's exit waits for it)."""
    marker = tmp_path / "running"
    stop = threading.Event()

    def stop_once_running() -> None:
        while not marker.exists():
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=stop_once_running, daemon=True).start()
    executor = make_executor("local", 1, None)
    results = list(executor.map_unordered(_run_until_abandoned, [(str(marker), 120.0)], should_stop=stop,
                                          abandon_on_stop=True))  # fmt: skip
    assert results == [] and marker.exists()
    pids = list(executor._pool._processes)  # type: ignore[attr-defined]
    executor.terminate()
    deadline = time.monotonic() + 30  # the pool's own thread reaps its workers: poll the pids, not Process.join
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.1)
    assert pids and not any(_running(pid) for pid in pids)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_local_executor_results_errors_and_crashes() -> None:
    with make_executor("local", 2, 100) as executor:
        assert sorted(executor.map_unordered(_square_or_die, [1, 2, 3])) == [(0, 101), (1, 104), (2, 109)]
        with pytest.raises(TaskFailed, match="_fail .* ValueError: bad item 7"):
            list(executor.map_unordered(_fail, [7]))
        with pytest.raises(WorkerCrashed, match="worker process died"):
            list(executor.map_unordered(_square_or_die, [-1, 2]))
    with pytest.raises(ConfigError):
        make_executor("cluster", 2, None)
