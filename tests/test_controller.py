"""Controller training (CMA-ES in the dream and the real env), evaluation on held-out tracks, executors.

Tiny untrained V/M checkpoints (z 8, h 16) and tiny budgets; real-env runs are a few dozen steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.checkpoint import load_model, load_resume_state, resume_path, save_checkpoint
from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes, file_sha256
from core.envs.dream import DreamEnv
from core.envs.world_model import WorldModel
from core.errors import ConfigError, StageCancelled
from core.evaluate import EVAL_SEED_START, EvaluateConfig, rollout_return
from core.models.controller import Controller, ControllerConfig
from core.models.mdnrnn import MDNRNN
from core.parallel import WorkerCrashed
from core.progress import Progress
from core.train.cmaes import CMAES
from core.train.controller import train_controller
from core.train.fitness import (
    DreamEvaluator,
    DreamStarts,
    GenerationPlan,
)
from tests.controller_world import H, Z, controller_checkpoint, dream_config


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from two threads, and two stall when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class QuadraticEvaluator:
    """Known optimum: return = -||params - target||^2 for every rollout."""

    def __init__(self, target: np.ndarray) -> None:
        self.target = target

    def rollout_returns(self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event):
        f = -((candidates - self.target) ** 2).sum(axis=1, keepdims=True)
        return np.repeat(f, len(plan.dream_seeds), axis=1)


def test_cmaes_improves_a_controller_on_a_known_optimum(world: SimpleNamespace, tmp_path: Path) -> None:
    target = np.random.default_rng(1).uniform(-1, 1, 3 * Z + 3)  # V-only controller: 27 parameters
    config = dream_config(world, tmp_path / "c.safetensors", v_only=True, population=12, rollouts=1, generations=60,
                     sigma0=0.3, latents=None)  # fmt: skip
    result = train_controller(config, evaluator=QuadraticEvaluator(target))
    kept = load_model(result.checkpoint, "controller")
    assert isinstance(kept, Controller) and kept.config.hidden_dim == 0
    start = np.linalg.norm(target)  # the initial mean is zeros
    assert np.linalg.norm(kept.get_flat() - target) < 0.15 * start
    best = [m["controller/fitness_best"] for _, m in result.history]
    assert best[-1] > 0.1 * best[0]  # fitness is minus the squared distance


def test_batched_dream_matches_dream_env_one_rollout_at_a_time(world: SimpleNamespace) -> None:
    wm = WorldModel.load(world.vision, world.memory)
    memory = wm.require_memory()
    starts = DreamStarts.from_latents(LatentEpisodes.load(world.latents), memory, 8, 0, 30, seed=0)
    # the warm start state is M's state after the real prefix
    ep = LatentEpisodes.load(world.latents).episode(int(starts.episodes[0]))
    t = int(starts.steps[0])
    if t > 0:
        h = memory.hidden_sequence(torch.from_numpy(ep["mu"][None, :t]), torch.from_numpy(ep["action"][None, :t]))
        torch.testing.assert_close(starts.h[0], h[0, -1], atol=1e-5, rtol=1e-5)
    config = ControllerConfig(Z, H)
    candidates = CMAES(np.zeros(3 * config.input_dim + 3), 0.5, 4, seed=3).ask()[:2]
    plan = GenerationPlan(np.array([5, 6, 7]), np.array([11, 22, 33]), np.array([0, 3, 7]))
    env = DreamEnv(wm, tau=1.15, max_steps=80)
    controller = Controller(config)
    for pool in (None, starts):
        batched = DreamEvaluator(memory, config, tau=1.15, max_steps=80, starts=pool).rollout_returns(candidates, plan)
        for p, params in enumerate(candidates):
            controller.set_flat(params)
            for r, seed in enumerate(plan.dream_seeds):
                i = int(plan.starts[r])
                options = (
                    None if pool is None else {"z": pool.z[i], "state": (pool.h[i][None, None], pool.c[i][None, None])}
                )
                obs, _ = env.reset(seed=int(seed), options=options)
                total, done = 0.0, False
                while not done:
                    obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
                    total += reward
                    done = terminated or truncated
                assert batched[p, r] == pytest.approx(total, abs=1e-4)


def test_resume_continues_the_same_cmaes_run(world: SimpleNamespace, tmp_path: Path) -> None:
    straight = train_controller(dream_config(world, tmp_path / "a.safetensors"))
    stop = threading.Event()

    def stop_after_two(p: Progress) -> None:
        if p.step == 2 and p.metrics:
            stop.set()

    first = train_controller(
        dream_config(world, tmp_path / "b.safetensors"), on_progress=stop_after_two, should_stop=stop
    )
    assert first.cancelled and load_resume_state(resume_path(tmp_path / "b.safetensors"))["generation"] == 2
    resumed = train_controller(dream_config(world, tmp_path / "b.safetensors", resume=True))
    assert not resumed.cancelled and [g for g, _ in resumed.history] == [3, 4]
    for (_, a), (_, b) in zip(straight.history[2:], resumed.history, strict=True):
        for key in ("controller/fitness_best", "controller/fitness_mean", "controller/sigma"):
            assert a[key] == b[key]
    sa = load_resume_state(resume_path(tmp_path / "a.safetensors"))
    sb = load_resume_state(resume_path(tmp_path / "b.safetensors"))
    assert torch.equal(sa["cma"]["mean"], sb["cma"]["mean"]) and torch.equal(sa["cma"]["C"], sb["cma"]["C"])
    assert torch.equal(sa["kept"]["params"], sb["kept"]["params"])


class NaNAfter:
    """Dream fitness, but NaN for some candidates from generation 3 and for all in generation 5."""

    def __init__(self, inner: DreamEvaluator) -> None:
        self.inner, self.calls = inner, 0

    def rollout_returns(self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event):
        self.calls += 1
        returns = self.inner.rollout_returns(candidates, plan, should_stop)
        if self.calls >= 3:
            returns[: 6 if self.calls == 5 else 2, 0] = np.nan
        return returns


def test_nan_fitness_is_reported_and_the_best_controller_kept(world: SimpleNamespace, tmp_path: Path) -> None:
    memory = WorldModel.load(world.vision, world.memory).require_memory()
    evaluator = NaNAfter(DreamEvaluator(memory, ControllerConfig(Z, H), 1.15, 30))
    reports: list[Progress] = []
    result = train_controller(dream_config(world, tmp_path / "c.safetensors", generations=5, latents=None),
                              evaluator=evaluator, on_progress=reports.append)  # fmt: skip
    messages = [p.message for p in reports if "NaN" in p.message]
    assert len(messages) == 3 and "2/6 candidates" in messages[0] and "6/6 candidates" in messages[-1]
    assert math.isnan(result.history[-1][1]["controller/fitness_best"])
    assert math.isfinite(result.history[2][1]["controller/fitness_worst"])
    kept = load_model(result.checkpoint, "controller")
    assert np.isfinite(kept.get_flat()).all()  # type: ignore[operator]
    assert math.isfinite(result.metrics["controller/kept_fitness"])


def _memory_with_constant_mean(world: SimpleNamespace, path: Path, mean: float) -> Path:
    """The fixture's M with every mixture component predicting z_{t+1} = (mean, ..., mean)."""
    m = load_model(world.memory, "mdnrnn")
    n = m.n_mdn  # the head's outputs: log_pi, mu, log_sigma (n each), reward, done
    with torch.no_grad():
        m.head.weight[n : 2 * n] = 0.0
        m.head.bias[n : 2 * n] = mean
    return save_checkpoint(path, m, kind="mdnrnn", config=m.config)


def test_diverging_dreams_are_flagged(world: SimpleNamespace, tmp_path: Path) -> None:
    far = _memory_with_constant_mean(world, tmp_path / "far.safetensors", 50.0)  # far outside the latents
    reports: list[Progress] = []
    config = dream_config(world, tmp_path / "c.safetensors", memory=far, generations=2, tau=0.0)
    result = train_controller(config, on_progress=reports.append)
    assert [m["controller/dream_diverged"] for _, m in result.history] == [1.0, 1.0]
    assert sum("ran off the range of real latents" in p.message for p in reports) == 1  # warned once
    near = _memory_with_constant_mean(world, tmp_path / "near.safetensors", 0.0)
    stable = train_controller(dream_config(world, tmp_path / "s.safetensors", memory=near, generations=1, tau=0.0))
    assert stable.history[0][1]["controller/dream_diverged"] == 0.0


def test_worker_crash_is_reported_and_the_best_controller_kept(world: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "c.safetensors"
    config = dream_config(world, out, evaluator="real", population=4, rollouts=1, generations=3, max_steps=15,
                     real_check_every=1, real_check_episodes=1, early_stop_patience=5)  # fmt: skip
    reports: list[Progress] = []

    def kill_a_worker(p: Progress) -> None:
        reports.append(p)
        if p.step == 1 and p.metrics:
            assert "controller/real_return" in p.metrics
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)  # type: ignore[arg-type]

    with pytest.raises(WorkerCrashed, match="best controller so far kept at"):
        train_controller(config, on_progress=kill_a_worker)
    assert "worker process died" in reports[-1].message
    kept = load_model(out, "controller")
    assert kept.checkpoint_metrics["controller/real_return"] == pytest.approx(  # type: ignore[attr-defined]
        reports[0].metrics["controller/real_return"]
    )
    state = load_resume_state(resume_path(out))
    assert state["generation"] == 1
    assert kept.checkpoint_extra["vision"] == str(world.vision)  # type: ignore[attr-defined]
    # 4 rollouts of at most 15 steps (at least 1 each), then one 15-step check; a resume goes on counting
    steps = reports[0].metrics["controller/real_env_steps"]
    assert 4 + 1 <= steps <= 4 * 15 + 15 and state["real_env_steps"] == steps


def test_early_stop_counts_the_remaining_steps() -> None:
    class StuckEnv:
        steps = 0

        def reset(self, seed: int):
            return np.zeros(3, np.float32), {}

        def step(self, action: np.ndarray):
            self.steps += 1
            return np.zeros(3, np.float32), -0.1, False, False, {}

    policy = SimpleNamespace(act=lambda obs: np.zeros(3, np.float32))
    env = StuckEnv()
    ret, steps = rollout_return(env, policy, 0, 100, early_stop_patience=10)
    assert ret == pytest.approx(-10.0)
    assert env.steps == steps == 10  # the steps spent, not the steps counted
    ret, steps = rollout_return(StuckEnv(), policy, 0, 100)
    assert (ret, steps) == (pytest.approx(-10.0), 100)
    asked: list[int] = []  # an abandoned episode (a stopped run's worker) ends at the next look, 10 steps apart
    ret, steps = rollout_return(StuckEnv(), policy, 0, 100, abandoned=lambda: asked.append(1) or len(asked) >= 3)
    assert (ret, steps, len(asked)) == (pytest.approx(-3.0), 30, 3)


def test_evaluate_prints_json_with_the_v_only_baseline(
    world: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from explorer.cli import main

    full = controller_checkpoint(world, tmp_path / "c.safetensors", H)
    v_only = controller_checkpoint(world, tmp_path / "v.safetensors", 0)
    args = ["evaluate", "--controller", str(full), "--v-only", str(v_only), "--episodes", "2", "--max-steps", "20",
            "--workers", "1", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "return_mean",
        "return_std",
        "return_min",
        "return_max",
        "episodes",
        "seeds",
        "returns",
        "seconds",
        "v_only",
        "partial",
    }
    assert out["episodes"] == 2 and out["partial"] is False and out["seeds"] == [EVAL_SEED_START, EVAL_SEED_START + 1]
    assert out["v_only"]["seeds"] == out["seeds"] and math.isfinite(out["v_only"]["return_mean"])
    written = json.loads((tmp_path / f"c.eval_{EVAL_SEED_START}x2.json").read_text())  # beside the controller
    # a results file is written only for a complete run, so it carries no "partial" flag
    assert {k: v for k, v in written.items() if k not in ("seed_range", "max_steps", "files")} == {
        k: v for k, v in out.items() if k != "partial"
    }
    assert written["seed_range"] == "development evaluation" and written["max_steps"] == 20
    assert written["files"]["v_only"] == {"path": str(v_only), "sha256": file_sha256(v_only)}
    assert sorted(written["files"]) == ["controller", "memory", "v_only", "vision"]


def test_a_shipped_controllers_results_stay_out_of_the_assets_folder() -> None:
    from core.assets import ASSETS_DIR
    from core.evaluate import results_path

    shipped = EvaluateConfig(controller=Path(ASSETS_DIR) / "convvae_controller.safetensors", episodes=3)
    assert results_path(shipped) == Path("runs/results") / f"convvae_controller.eval_{EVAL_SEED_START}x3.json"
    own = EvaluateConfig(controller=Path("runs/x/controller.safetensors"), episodes=3)
    assert results_path(own).parent == Path("runs/x")


def test_a_v_only_controller_starts_a_full_one_with_the_same_actions(world: SimpleNamespace, tmp_path: Path) -> None:
    from core.train.controller_setup import initial_mean

    torch.manual_seed(1)
    v_only = Controller(ControllerConfig(Z, 0))
    with torch.no_grad():
        v_only.fc.weight.normal_(0.0, 0.5)
        v_only.fc.bias.normal_(0.0, 0.5)
    path = save_checkpoint(tmp_path / "v.safetensors", v_only, kind="controller", config=v_only.config)
    full = Controller(ControllerConfig(Z, H))
    full.set_flat(initial_mean(dream_config(world, tmp_path / "c.safetensors", init_controller=path), full.config,
                                full.n_params))  # fmt: skip
    z, h = torch.randn(50, Z), torch.randn(50, H)
    with torch.no_grad():
        torch.testing.assert_close(full(torch.cat([z, h], -1)), v_only(z))
        assert full(torch.cat([z, h], -1))[:, 0].std() > 0.1  # the copied weights act (not all zero)
    wrong = Controller(ControllerConfig(Z + 1, 0))
    wrong_path = save_checkpoint(tmp_path / "w.safetensors", wrong, kind="controller", config=wrong.config)
    with pytest.raises(ConfigError, match="sizes"):
        initial_mean(dream_config(world, tmp_path / "c.safetensors", init_controller=wrong_path), full.config,
                      full.n_params)  # fmt: skip


@pytest.mark.parametrize("head_prior", [True, False])
def test_memory_heads_start_at_the_data_base_rates(world: SimpleNamespace, tmp_path: Path, head_prior: bool) -> None:
    """With no terminal step in the data, a first dream step (zero LSTM state) must not read as done."""
    from core.train.memory import train_memory

    out = tmp_path / "m.safetensors"
    train_memory(MemoryTrainConfig(latents=world.latents, out=out, epochs=1, seq_len=10, batch_size=4, hidden_dim=H,
                                   n_gaussians=2, head_prior=head_prior))  # fmt: skip
    m = load_model(out, "mdnrnn")
    assert isinstance(m, MDNRNN)
    with torch.no_grad():
        step, _ = m.step(torch.randn(64, Z), torch.rand(64, 3), m.initial_state(64))
    p_done = torch.sigmoid(step.done_logit)
    if head_prior:
        assert p_done.max() < 0.01
        assert abs(step.reward.mean().item() - (-0.1)) < 0.1  # the data's reward is -0.1 at every step
    else:
        assert p_done.mean() > 0.2  # the failure this option fixes: ~0.5 from a near-zero bias


def test_distilled_controller_reproduces_its_teacher(world: SimpleNamespace, tmp_path: Path) -> None:
    """Teacher and student share V and M here, so the teacher's own linear map is the exact answer."""
    from core.train.distill import DistillConfig, distill_controller

    torch.manual_seed(3)
    teacher = Controller(ControllerConfig(Z, H))
    with torch.no_grad():
        teacher.fc.weight.normal_(0.0, 1.0)
    teacher_path = save_checkpoint(tmp_path / "teacher.safetensors", teacher, kind="controller", config=teacher.config,
                                   extra={"vision": str(world.vision), "memory": str(world.memory)})  # fmt: skip
    config = DistillConfig(teacher=teacher_path, vision=world.vision, memory=world.memory, out=tmp_path / "c.safetensors",
                           episodes_dir=tmp_path / "teacher_episodes", episodes=3, seed=5, max_steps=25, workers=1,
                           threads=1, steps=800)  # fmt: skip
    result = distill_controller(config)
    m = result.metrics
    assert len(list((tmp_path / "teacher_episodes").glob("*.npz"))) == 3
    assert m["distill/val_r2_steer"] > 0.9 and m["distill/val_mse"] < 0.01, m
    student = load_model(result.checkpoint, "controller")
    assert isinstance(student, Controller) and student.config == teacher.config
    assert student.checkpoint_extra["memory"] == str(world.memory)  # type: ignore[attr-defined]
    # --no-brake: the same fit, written with its brake held at 0 (steering and gas untouched)
    no_brake = load_model(
        distill_controller(dataclasses.replace(config, out=tmp_path / "nb.safetensors", brake=False)).checkpoint,
        "controller",
    )
    assert isinstance(no_brake, Controller)
    assert torch.allclose(no_brake.fc.weight[:2], student.fc.weight[:2], atol=1e-6)
    obs = torch.randn(256, Z + H) * 3
    with torch.no_grad():
        assert no_brake(obs)[:, 2].max() == 0 and student(obs)[:, 2].max() > 0
    # V-only: the same teacher through z alone cannot be matched exactly (h carries part of its actions)
    v_only = distill_controller(dataclasses.replace(config, out=tmp_path / "v.safetensors", v_only=True))
    assert load_model(v_only.checkpoint, "controller").config.hidden_dim == 0  # type: ignore[attr-defined]
    assert v_only.metrics["distill/train_mse"] > m["distill/train_mse"]
    with pytest.raises(ConfigError, match="900000"):
        DistillConfig(seed=899_999, episodes=2)


def test_dagger_rounds_label_the_students_own_states_with_the_teachers_actions(
    world: SimpleNamespace, tmp_path: Path
) -> None:
    """A V-only student cannot copy a teacher that reads h, so it drives its own states; DAgger records them on the
    tracks after the teacher's and labels them with what the teacher would do there, not what the student did."""
    from core.data.episodes import episode_path, read_episode
    from core.train.distill import DistillConfig, distill_controller, teacher_actions

    torch.manual_seed(4)
    teacher_c = Controller(ControllerConfig(Z, H))
    with torch.no_grad():
        teacher_c.fc.weight.normal_(0.0, 1.0)
    teacher_path = save_checkpoint(tmp_path / "teacher.safetensors", teacher_c, kind="controller",
                                   config=teacher_c.config, extra={"vision": str(world.vision), "memory": str(world.memory)})  # fmt: skip
    episodes = tmp_path / "episodes"
    config = DistillConfig(teacher=teacher_path, vision=world.vision, memory=world.memory, out=tmp_path / "c.safetensors",
                           episodes_dir=episodes, episodes=2, seed=11, max_steps=20, workers=1, threads=1, steps=300,
                           v_only=True, dagger_rounds=2, dagger_episodes=2)  # fmt: skip
    result = distill_controller(config)
    assert sorted(p.name for p in episodes.glob("*.npz")) == [episode_path(episodes, s).name for s in range(11, 17)]
    teacher = WorldModel.load(world.vision, world.memory, teacher_path)
    own = read_episode(episode_path(episodes, 11))
    assert own.policy == "teacher"
    labels = teacher_actions(teacher, own.frames[:-1], own.actions)
    assert torch.allclose(labels, torch.from_numpy(own.actions), atol=1e-4)  # on its own episode: what it did
    student_episode = read_episode(episode_path(episodes, 15))
    assert student_episode.policy == "student_2"
    labels = teacher_actions(teacher, student_episode.frames[:-1], student_episode.actions)
    assert (labels - torch.from_numpy(student_episode.actions)).abs().max() > 0.05  # the student drove otherwise
    m = result.metrics
    assert {"distill/student_return_round_1", "distill/student_return_round_2"} <= m.keys()
    assert math.isfinite(m["distill/student_return_round_2"]) and math.isfinite(m["distill/val_mse"])
    # stopped while encoding (after the first teacher episode): nothing written
    stop = threading.Event()

    def stop_after_first(p: Progress) -> None:
        if p.message.startswith("encoded teacher episode"):
            stop.set()

    halted = dataclasses.replace(config, out=tmp_path / "halted.safetensors", dagger_rounds=0)
    with pytest.raises(StageCancelled, match="nothing written"):
        distill_controller(halted, on_progress=stop_after_first, should_stop=stop)
    assert not halted.out.exists()
    with pytest.raises(ConfigError, match="dagger_episodes"):
        DistillConfig(dagger_rounds=1, dagger_episodes=0)
    with pytest.raises(ConfigError, match=r"899990\.\.900001"):  # the student's tracks count too
        DistillConfig(seed=899_990, episodes=2, dagger_rounds=2, dagger_episodes=5)


def test_a_dream_only_controller_never_steps_the_real_env(
    world: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium

    import core.envs.car_racing as car_racing

    made: list[str] = []

    def counting_make(*args: object, **kwargs: object) -> None:
        made.append(str(args))
        raise AssertionError("a dream-only run built a real env")

    monkeypatch.setattr(gymnasium, "make", counting_make)
    monkeypatch.setattr(car_racing, "make_real_env", counting_make)
    result = train_controller(dream_config(world, tmp_path / "c.safetensors", generations=3, real_check_every=0))
    assert made == [] and result.checkpoint is not None and len(result.history) == 3
    assert not any("real_return" in k for _, m in result.history for k in m)
    assert [m["controller/real_env_steps"] for _, m in result.history] == [0.0, 0.0, 0.0]


def test_real_checks_of_a_dream_run_drive_whole_episodes(world: SimpleNamespace, tmp_path: Path) -> None:
    """A 200-step dream horizon once cut the real checks to 200 steps too, and they kept a generation-10
    controller (175.9 on 10 dev tracks, against 331.3 for the best by dream fitness)."""
    from core.envs.car_racing import EPISODE_STEPS
    from core.train.controller import real_rollout_steps

    dream = dream_config(world, tmp_path / "c.safetensors", max_steps=200, real_check_every=10)
    real = dream_config(world, tmp_path / "c.safetensors", evaluator="real", max_steps=200)
    assert real_rollout_steps(dream) == EPISODE_STEPS == 1000
    assert real_rollout_steps(real) == 200
