"""The ``train-controller`` stage: CMA-ES (:mod:`core.train.cmaes`) over the linear controller, in the dream or in
the real env, with the fitness of :mod:`core.train.fitness`.

Ha & Schmidhuber (2018), sec. 3: C (867 parameters) is trained by CMA-ES (Hansen, 2016, "The CMA Evolution
Strategy: A Tutorial") with fitness = mean return over several rollouts per candidate (population 64 x 16
rollouts); sec. 4.3-4.5: trained inside the dream at a temperature slightly above 1, the agent transfers to
reality. Two fitness evaluators share one interface (:class:`FitnessEvaluator`):

- :class:`DreamEvaluator` steps every candidate x rollout as one :class:`BatchedDream` (N = 1024 for 64 x 16)
  through M, whose reward and done heads give the returns. Dreams start from real encoded frames (with M's
  state after the real prefix) sampled from the latent file, or from z ~ N(0, I).
- :class:`RealEvaluator` runs CarRacing-v3 through the ``[z, h]`` wrapper on an executor (local worker
  processes or Ray), optionally stopping hopeless episodes early.

Every ``real_check_every`` generations the generation's best candidate (or the CMA-ES mean: ``check_candidate``)
drives on real validation tracks (or in fixed dreams: ``check_in``); the controller kept at ``out`` is the best on
those checks (until the first check: the best by fitness). All candidates of a generation share its random choices
(tracks, dream seeds, starts): common random numbers make the ranking less noisy. Track seeds: real training
rollouts in [0, 900,000), real checks in [900,000, 1,000,000), evaluation from 1,000,000
(:data:`core.evaluate.EVAL_SEED_START`), so they never overlap (the ranges: :mod:`core.data.seeds`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.checkpoint import (
    check_output_file,
    load_resume_state,
    resume_path,
    resuming,
    save_checkpoint,
    save_resume_state,
)
from core.envs.car_racing import EPISODE_STEPS
from core.envs.world_model import WorldModel
from core.errors import CheckpointError, ConfigError
from core.evaluate import RealRolloutSpec
from core.models.controller import Controller, ControllerConfig
from core.parallel import Executor, TaskFailed, WorkerCrashed, make_executor
from core.policies_wm import WorldModelFiles
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.cmaes import CMAES
from core.train.controller_config import ControllerTrainConfig
from core.train.controller_setup import dream_evaluator, initial_mean
from core.train.fitness import (
    REAL_STEPS,
    DreamEvaluator,
    FitnessEvaluator,
    RealEvaluator,
    dream_check_plan,
    generation_plan,
    real_check_seeds,
    real_returns,
)
from core.train.loop import StageResult

NON_FINITE_FITNESS = -1e6
"""Fitness given to a candidate whose return is NaN or infinite (ranked last; CMA-ES uses ranks only)."""
DIVERGED_WARNING = 0.1
"""Warn (once per run) when more than this share of a generation's dreams leave the range of real latents."""
CHECK_NAMES = {"best": "generation's best", "mean": "CMA-ES mean"}
"""What a check drives, by ``check_candidate``, as the progress messages name it."""
RESUME_FORMAT = 1


# -- the stage ----------------------------------------------------------------------------------------------------
@dataclass
class _Kept:
    """A controller worth keeping: flat params, its fitness, its mean check return (NaN: unchecked): real tracks'
    return, or the fixed dreams' with ``check_in="dream"`` (the field keeps its name for older resume states)."""

    params: np.ndarray
    fitness: float
    real_return: float
    generation: int

    def as_state(self) -> dict[str, Any]:
        return {"params": torch.from_numpy(self.params), "fitness": self.fitness,
                "real_return": self.real_return, "generation": self.generation}  # fmt: skip

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Kept:
        return cls(state["params"].numpy().copy(), float(state["fitness"]), float(state["real_return"]),
                   int(state["generation"]))  # fmt: skip


def _recheck(
    executor: Executor[RealRolloutSpec],
    checked: list[_Kept],
    config: ControllerTrainConfig,
    stop: threading.Event,
    report: ProgressFn,
) -> tuple[_Kept, int] | None:
    """Drive the ``recheck_top`` best checked controllers on ``recheck_episodes`` more model-selection tracks
    and return the best by its mean over all its real tracks (check and recheck), with the real-env steps
    taken; None when stopped or nothing was checked."""
    top = sorted(checked, key=lambda c: c.real_return, reverse=True)[: config.recheck_top]
    n_check = config.real_check_episodes
    seeds = real_check_seeds(n_check + config.recheck_episodes)[n_check:]
    best: _Kept | None = None
    steps = 0
    for candidate in top:
        out = real_returns(executor, candidate.params, seeds, stop)
        if out is None:
            return None
        returns, n = out
        steps += n
        overall = (candidate.real_return * n_check + float(np.sum(returns))) / (n_check + len(returns))
        report(Progress("controller", candidate.generation, config.generations, message=(
            f"recheck of generation {candidate.generation}'s: {np.mean(returns):.1f} on {len(returns)} more "
            f"tracks (check {candidate.real_return:.1f}), {overall:.1f} on all {n_check + len(returns)}"
        )))  # fmt: skip
        if best is None or overall > best.real_return:
            best = _Kept(candidate.params, candidate.fitness, overall, candidate.generation)
    return None if best is None else (best, steps)


def real_rollout_steps(config: ControllerTrainConfig) -> int:
    """Steps per real episode: ``max_steps`` with the real evaluator, else whole episodes (a short dream horizon
    must not shorten the checks that choose the kept controller)."""
    return config.max_steps if config.evaluator == "real" else EPISODE_STEPS


def train_controller(
    config: ControllerTrainConfig,
    *,
    evaluator: FitnessEvaluator | None = None,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Train the controller with CMA-ES and write the kept controller to ``config.out``.

    Each generation: ask ``population`` candidates, get their rollouts' returns from the evaluator, tell CMA-ES the
    mean returns (a NaN or infinite one is replaced by ``NON_FINITE_FITNESS`` and reported), report
    ``controller/fitness_best``, ``controller/fitness_mean``, ``controller/fitness_worst`` (over finite values) and
    ``controller/sigma``, save the resume state; every ``real_check_every`` generations and after the last one,
    drive the generation's best candidate (or the updated CMA-ES mean, by ``check_candidate``) on the real check
    tracks (``controller/real_return``; with ``check_in="dream"`` in the run's fixed check dreams instead,
    ``controller/dream_check_return``, no real-env step) and keep it if it beats every earlier check (with
    ``check_init`` the initial controller is checked first, as generation 0, and kept until a check beats it);
    ``controller/real_env_steps`` counts every real-env step the run has taken so far (real-evaluator rollouts and
    real checks, kept across ``resume``), the x axis of a learning curve in real experience. With ``check_patience``
    the run stops once that many checks in a row fall below the kept one's; with ``recheck_top`` the best checked
    controllers then drive more tracks and the best over all its tracks is kept. The kept controller is written
    whenever it changes, with ``extra`` recording the vision and memory checkpoints.

    Args:
        config: the stage config.
        evaluator: fitness evaluator to use instead of the one ``config.evaluator`` names.
        on_progress: progress callback (one report per generation, plus messages).
        should_stop: stops after the current dream rollouts, abandoning real episodes still running (real CMA-ES, a
            check or recheck); the last finished generation can be resumed.

    Returns:
        StageResult with the kept checkpoint, its metrics, and the per-generation history of this call.

    Raises:
        CheckpointError: bad V, M, latents or resume state. ConfigError: a resume state or initial controller
        that does not fit. WorkerCrashed / TaskFailed: a real rollout's worker died or failed; the message
        says where the best controller so far is kept (resume with ``resume=True``).
        OutputError: ``config.out`` cannot be written (checked before any work).
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    check_output_file(config.out, "controller checkpoint")
    world_model = WorldModel.load(config.vision, config.memory)
    memory = world_model.require_memory()
    controller_config = ControllerConfig(world_model.z_dim, 0 if config.v_only else world_model.hidden_dim)
    controller = Controller(controller_config)
    n_params = controller.n_params
    cmaes = CMAES(initial_mean(config, controller_config, n_params), config.sigma0, config.population, config.seed)
    kept: _Kept | None = None
    checked: list[_Kept] = []  # every real check's candidate, for --recheck-top
    stale_checks = 0  # real checks in a row that did not beat the kept one, for --check-patience
    start = 0
    real_env_steps = 0  # every real-env step the run has taken: CMA-ES rollouts and real checks
    if config.resume:
        state = load_resume_state(
            resume_path(config.out), "train-controller",
            {"format": int, "generation": int, "population": int, "n_params": int, "cma": dict}, checkpoint=config.out,
        )  # fmt: skip
        if state["format"] != RESUME_FORMAT:
            raise CheckpointError(f"{resume_path(config.out)} is a controller resume state of another format")
        if (state["population"], state["n_params"]) != (config.population, n_params):
            raise ConfigError(
                f"the run at {config.out} has population {state['population']} and {state['n_params']} parameters; "
                f"resume needs the same (got {config.population} and {n_params})"
            )
        with resuming(resume_path(config.out)):
            cmaes.load_state_dict(state["cma"])
            start = int(state["generation"])
            kept = _Kept.from_state(state["kept"]) if "kept" in state else None
            real_env_steps = int(state.get("real_env_steps", 0))
            checked = [_Kept.from_state(c) for c in state.get("checked", [])]
            stale_checks = int(state.get("stale_checks", 0))
        on_progress(Progress("controller", start, config.generations, message=f"resumed after generation {start}"))

    check_seeds = real_check_seeds(config.real_check_episodes)
    extra: dict[str, Any] = {
        "vision": str(config.vision), "memory": str(config.memory),
        "dream_ensemble": [str(p) for p in config.dream_ensemble],
        "latents": str(config.latents) if config.latents is not None else "",
        "evaluator": config.evaluator if evaluator is None else type(evaluator).__name__,
        "real_check_seeds": [check_seeds[0], check_seeds[-1]],
        "train_config": {k: str(v) for k, v in dataclasses.asdict(config).items()},
    }  # fmt: skip

    def save_resume(generations_done: int, new_kept: bool = False) -> None:
        """Write the CMA-ES state after ``generations_done`` generations, with the kept controller's checkpoint
        as its pair when ``new_kept`` (else the state names the checkpoint already on disk)."""
        state: dict[str, Any] = {
            "stage": "train-controller", "format": RESUME_FORMAT, "generation": generations_done, "population": config.population,
            "n_params": n_params, "cma": cmaes.state_dict(), "real_env_steps": real_env_steps,
            "checked": [c.as_state() for c in checked], "stale_checks": stale_checks,
        }  # fmt: skip
        if kept is None:
            save_resume_state(resume_path(config.out), state)
            return
        state["kept"] = kept.as_state()
        if not new_kept:
            save_resume_state(resume_path(config.out), state, checkpoint=config.out)
            return
        controller.set_flat(kept.params)
        metrics = {"controller/fitness": kept.fitness, "controller/generation": float(kept.generation)}
        if not math.isnan(kept.real_return):
            metrics[check_key] = kept.real_return
        save_checkpoint(config.out, controller, kind="controller", config=controller_config, metrics=metrics,
                        extra=dict(extra, generation=kept.generation), resume_state=state)  # fmt: skip

    in_dream = config.check_in == "dream"  # checks in fixed dreams: no real-env step for choosing
    check_key = "controller/dream_check_return" if in_dream else "controller/real_return"
    needs_real = (evaluator is None and config.evaluator == "real") or (config.real_check_every > 0 and not in_dream)
    executor: Executor[RealRolloutSpec] | None = None
    history: list[tuple[int, dict[str, float]]] = []
    metrics: dict[str, float] = {}
    generation = start
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        if needs_real:
            spec = RealRolloutSpec(WorldModelFiles.read(config.vision, config.memory), real_rollout_steps(config),
                                   include_h=not config.v_only)  # fmt: skip
            executor = make_executor(config.executor, config.workers, spec, config.ray_address)
        if evaluator is None:
            if config.evaluator == "dream":
                evaluator = dream_evaluator(config, memory, controller_config, on_progress)
            else:
                assert executor is not None
                evaluator = RealEvaluator(executor, config.early_stop_patience)
        n_starts = len(evaluator.starts or ()) if isinstance(evaluator, DreamEvaluator) else 0
        check_plan = dream_check_plan(config.seed, config.dream_check_rollouts, n_starts)

        def run_check(params: np.ndarray) -> tuple[list[float], int] | None:
            """One check of flat ``params``: its returns and the real-env steps taken; None when stopped."""
            if in_dream:
                assert evaluator is not None
                dreamt = evaluator.rollout_returns(params[None], check_plan, stop)
                return None if dreamt is None else (dreamt[0].tolist(), 0)
            assert executor is not None
            return real_returns(executor, params, check_seeds, stop)

        warned_divergence = False
        patience_out = False
        for generation in range(start, config.generations):
            if config.check_init and generation == 0 and not checked:  # -- the start, checked as generation 0 --
                init_out = run_check(cmaes.mean.copy())
                if init_out is None:
                    break
                real, steps = init_out
                real_env_steps += steps
                kept = _Kept(cmaes.mean.copy(), math.nan, float(np.mean(real)), 0)
                checked.append(kept)
                save_resume(0, new_kept=True)
                on_progress(Progress("controller", 0, config.generations, message=(
                    f"{config.check_in} check of the initial controller: {kept.real_return:.1f} +- {np.std(real):.1f} "
                    f"on {len(real)} {'dreams' if in_dream else 'tracks'} (kept)"
                )))  # fmt: skip
            # -- sample, evaluate, update --
            tg = time.perf_counter()
            candidates = cmaes.ask()
            plan = generation_plan(config.seed, generation, config.rollouts, n_starts)
            returns = evaluator.rollout_returns(candidates, plan, stop)
            if returns is None:
                break
            fitness = returns.mean(axis=1)
            finite = np.isfinite(fitness)
            told = np.where(finite, fitness, NON_FINITE_FITNESS)
            cmaes.tell(candidates, told)
            messages = []
            if not finite.all():
                messages.append(f"{int((~finite).sum())}/{len(fitness)} candidates had a NaN or infinite fitness "
                                f"(ranked last with {NON_FINITE_FITNESS:g})")  # fmt: skip
            good = fitness[finite]
            metrics = {
                "controller/fitness_best": float(good.max()) if good.size else math.nan,
                "controller/fitness_mean": float(good.mean()) if good.size else math.nan,
                "controller/fitness_worst": float(good.min()) if good.size else math.nan,
                "controller/sigma": cmaes.sigma,
                **getattr(evaluator, "metrics", {}),
            }
            real_env_steps += int(metrics.pop(REAL_STEPS, 0))
            diverged = metrics.get("controller/dream_diverged", 0.0)
            if diverged > DIVERGED_WARNING and not warned_divergence:
                warned_divergence = True
                limit = f" (|z| > {evaluator.z_norm_limit:.1f})" if isinstance(evaluator, DreamEvaluator) else ""
                messages.append(
                    f"warning: {diverged:.0%} of the dreams ran off the range of real latents{limit}: M is unstable "
                    "there and its rewards mean nothing; check M (trained on sampled z?) or lower --tau"
                )
            best = int(np.argmax(told))
            # -- keep the best by fitness until a real check has happened --
            new_kept = finite[best] and (
                kept is None or (math.isnan(kept.real_return) and fitness[best] > kept.fitness)
            )
            if new_kept:
                kept = _Kept(candidates[best].copy(), float(fitness[best]), math.nan, generation + 1)
            save_resume(generation + 1, bool(new_kept))
            # -- a real (or dream) check of the generation's best candidate, or of the updated CMA-ES mean --
            last = generation + 1 == config.generations
            due = config.real_check_every and ((generation + 1) % config.real_check_every == 0 or last)
            if not due or (executor is None and not in_dream):
                check_ok = False
            elif config.check_candidate == "mean":  # no dream fitness of its own: it carries the generation's mean
                check_params, check_ok = cmaes.mean, bool(finite.any())
                check_fitness = float(good.mean()) if check_ok else math.nan
            else:
                check_params, check_ok = candidates[best].copy(), bool(finite[best])
                check_fitness = float(fitness[best])
            if check_ok:
                check_out = run_check(check_params)
                if check_out is None:
                    break
                real, steps = check_out
                real_env_steps += steps
                real_mean = float(np.mean(real))
                metrics[check_key] = real_mean
                assert kept is not None
                improved = math.isnan(kept.real_return) or real_mean > kept.real_return
                messages.append(
                    f"{config.check_in} check of the {CHECK_NAMES[config.check_candidate]}: {real_mean:.1f} +- "
                    f"{np.std(real):.1f} on {len(real)} {'dreams' if in_dream else 'tracks'}"
                    + (" (kept)" if improved else f" (kept one: {kept.real_return:.1f})")
                )
                checked.append(_Kept(check_params, check_fitness, real_mean, generation + 1))
                stale_checks = 0 if improved else stale_checks + 1
                if improved:
                    kept = checked[-1]
                if config.check_patience and stale_checks >= config.check_patience:
                    messages.append(f"stopping: {stale_checks} real checks in a row below the kept one's")
                    patience_out = True
                save_resume(generation + 1, new_kept=improved)  # with the check's real-env steps
            metrics["controller/real_env_steps"] = float(real_env_steps)
            metrics["controller/generation_s"] = time.perf_counter() - tg
            history.append((generation + 1, metrics))
            message = f"generation {generation + 1}: " + "; ".join(messages) if messages else ""
            on_progress(Progress("controller", generation + 1, config.generations, metrics, message))
            if patience_out:
                generation += 1
                break
        else:
            generation = config.generations
        if (generation == config.generations or patience_out) and config.recheck_top and executor is not None:
            rechecked = _recheck(executor, checked, config, stop, on_progress)
            if rechecked is not None:
                best_all, steps = rechecked
                real_env_steps += steps
                new_kept = best_all.generation != (kept.generation if kept is not None else -1)
                kept = best_all
                extra["kept_real_tracks"] = config.real_check_episodes + config.recheck_episodes
                save_resume(generation, new_kept=True)
                what = "a new one" if new_kept else "the same one"
                msg = f"recheck done: kept generation {kept.generation}'s ({what}), {kept.real_return:.1f} on all its tracks"
                on_progress(Progress("controller", generation, config.generations, message=msg))
    except (WorkerCrashed, TaskFailed) as exc:
        where = f"kept at {config.out}" if kept is not None else "not saved yet (no generation finished)"
        msg = f"{exc}; best controller so far {where}; continue with --resume"
        on_progress(Progress("controller", generation, config.generations, message=msg))
        raise type(exc)(msg) from None
    finally:
        torch.set_num_threads(threads)
        if executor is not None and stop.is_set():
            executor.terminate()  # a stop abandons the real episodes still running (their returns are dropped)
        elif executor is not None:
            executor.close()
    cancelled = generation < config.generations and not patience_out
    final = dict(metrics, **{"controller/real_env_steps": float(real_env_steps)})
    if kept is not None:
        final["controller/kept_fitness"] = kept.fitness
        if not math.isnan(kept.real_return):
            final["controller/kept_real_return"] = kept.real_return
    checkpoint = Path(config.out) if kept is not None else None
    return StageResult(checkpoint, final, cancelled, time.perf_counter() - t0, history)
