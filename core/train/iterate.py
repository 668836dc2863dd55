"""The ``iterate`` stage: Ha's iterative training procedure (Ha & Schmidhuber, 2018, sec. 5).

A world model trained on random rollouts only knows the parts of the track a random policy reaches. Each
round therefore (1) collects new real rollouts with the current controller plus exploration noise, (2) encodes
them with V, (3) retrains M on the old and the new latents (optionally several draws, keeping the one whose dreams
track the held-out episodes' road best), (4) trains C again in the new dream (or in the ensemble of the round's
draws), starting from the previous controller (or from the start). Round r writes everything to
``out_dir/round_r/`` and marks itself done with a ``round.json``; a rerun skips finished rounds (and collection
skips episodes already on disk). Without a starting controller, round 0 trains one in the dream of the starting
world model. With ``keep_memory`` step (3) is skipped: M stays, and the new episodes' states join the dreams'
starts, so C learns from the states its own policy reaches in reality (DAgger, Ross et al., 2011).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.checkpoint import atomic_path, check_output_dir, load_resume_state, resume_path
from core.config import CollectConfig, EncodeConfig, MemoryTrainConfig, check, check_finite
from core.data.collect import collect
from core.data.datasets import LatentEpisodes
from core.data.episodes import episode_path, read_episode
from core.data.seeds import TRAINING
from core.envs.car_racing import EPISODE_STEPS
from core.errors import ConfigError, EpisodeError
from core.policies_wm import ControllerPolicyFactory, WorldModelFiles
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.controller import ControllerTrainConfig, train_controller
from core.train.encode import train_encode
from core.train.loop import StageResult
from core.train.memory import train_memory


@dataclass(frozen=True)
class IterateConfig:
    """Rounds of: collect with the controller (+ noise), retrain M on old + new data, retrain C in the dream."""

    train_controller: ControllerTrainConfig = ControllerTrainConfig()
    """Controller training of every round; its vision, memory and latents are the starting world model and
    data (its out, init_controller and resume are set per round)."""
    train_memory: MemoryTrainConfig = MemoryTrainConfig(epochs=5)
    """MDN-RNN training of every round (its latents, out and resume are set per round)."""
    start_controller: Path | None = None
    """Controller that collects the first round's rollouts (default: train one in the dream first, as round 0)."""
    out_dir: Path = Path("runs/iterate")
    """Directory of the rounds (round_0 .. round_N: episodes, latents, memory, controller)."""
    rounds: int = 2
    """Rounds of collect -> retrain M -> retrain C."""
    episodes: int = 100
    """New real episodes per round."""
    noise_std: float = 0.1
    """Exploration noise: standard deviation of the Gaussian added to the controller's steering."""
    excursion_prob: float = 0.005
    """Per-step probability of a random excursion of 5-30 steps off the controller's line (onto the verge or the
    grass, then the controller's recovery; see core.policies_wm.ControllerPolicy)."""
    noise_corr_steps: float = 0.0
    """Correlation time of the steering noise in env steps (AR(1) / Ornstein-Uhlenbeck; 0 = white noise).
    Correlated pushes move the car off the controller's line, so M sees what steering does."""
    gas_hold_prob: float = 0.0
    """Per-step probability of holding the gas at a random value for 20-80 steps while the controller steers (so M
    sees what gas does; see core.policies_wm.ControllerPolicy)."""
    stop_prob: float = 0.0
    """Per-step probability of a stop: brake to rest, stand 20-100 steps, drive off; half the episodes also begin
    parked (so M sees a car that stays where it is; see core.policies_wm.ControllerPolicy)."""
    check_data_dirs: tuple[Path, ...] = ()
    """Held-out episode directories (e.g. agent-driven and random ones, seeds 900,000..999,999) on which every
    round's new M is measured with `divergence` (road share kept and tracked, pixel MSE, reward per horizon);
    the figures go into the round's round.json and the stage's metrics."""
    check_horizons: tuple[int, ...] = (10, 30, 100, 200)
    """Dream horizons of the per-round divergence check."""
    check_max_episodes: int = 10
    """Episodes per check directory in the per-round divergence check (0 = all)."""
    check_tau: float = 1.0
    """MDN temperature of the per-round divergence check's dreams (the open-loop tables of docs/history.md use 0.5)."""
    check_samples: int = 2
    """Dreams per window in the per-round divergence check."""
    collect_seed: int = 500_000
    """First track seed of the new rollouts; round r uses collect_seed + (r - 1) * episodes onwards (the
    range must stay below the real-check tracks at 900,000)."""
    collect_max_steps: int = EPISODE_STEPS
    """Steps per collected episode at most (CarRacing's own limit is 1000): whole episodes, whatever the dream
    horizon of train_controller.max_steps."""
    warm_start_memory: bool = True
    """Continue training the previous M (when it has a resume state) instead of training one from scratch."""
    memory_draws: int = 1
    """Ms trained per round, each with its own seed (train_memory.seed + 0, 1, ...). The round keeps the draw whose
    dreams track reality's road best on check_data_dirs: the mean over the sets of road_tracked at the longest check
    horizon, ties to the lower latent MSE there. Ms of one recipe can differ more by seed than by recipe (the
    share of dreams keeping the road at 200 steps 32% against 93% for two seeds on the same data). > 1 needs
    check_data_dirs."""
    ensemble_draws: bool = False
    """Train each round's C in the ensemble of all the round's M draws (needs memory_draws > 1): the kept draw is its
    memory (the controller reads that M's h, in the dream and in reality) and the other draws its dream_ensemble."""
    ensemble_penalty: float = 0.0
    """With ensemble_draws: lambda of the disagreement penalty taken off the dream's reward (train_controller's
    disagreement_penalty; MOPO, Yu et al., 2020). 0: off."""
    dream_starts: Path | None = None
    """Latent file whose real frames start the controller's dreams in every round (e.g. an agent's on-road episodes,
    with speeds for an M that reads them); default: the round's merged latents, every state of the data, random
    episodes included."""
    controller_from_start: bool = False
    """Train each round's C from train_controller.init_controller (None: CMA-ES from zero) in the new dream
    instead of continuing the previous round's controller, so a controller that learnt the last M's errors does
    not carry them into the next round."""
    keep_memory: bool = False
    """Keep the starting M in every round (train_controller's memory, dream_ensemble and disagreement_penalty)
    instead of retraining it: a round adds the states its noisy controller reached in reality to the dreams' starts
    (round 1 adds them to dream_starts, or to train_controller.latents) and C goes on from the previous controller
    there, so it trains on the states its own policy visits (DAgger, Ross et al., 2011): a stand on the grass, the
    verge after a bend taken too fast. Takes no memory_draws, ensemble_draws or check_data_dirs (M does not change)."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
        check(self.episodes >= 1, f"episodes must be >= 1, got {self.episodes}")
        check(self.noise_std >= 0, f"noise_std must be >= 0, got {self.noise_std}")
        check(0 <= self.excursion_prob <= 1, f"excursion_prob must be in [0, 1], got {self.excursion_prob}")
        check(self.noise_corr_steps >= 0, f"noise_corr_steps must be >= 0, got {self.noise_corr_steps}")
        check(0 <= self.gas_hold_prob <= 1, f"gas_hold_prob must be in [0, 1], got {self.gas_hold_prob}")
        check(0 <= self.stop_prob <= 1, f"stop_prob must be in [0, 1], got {self.stop_prob}")
        check(self.memory_draws >= 1, f"memory_draws must be >= 1, got {self.memory_draws}")
        check(
            self.memory_draws == 1 or bool(self.check_data_dirs),
            "memory_draws > 1 keeps the draw with the best dream checks: give check_data_dirs",
        )
        check(
            not self.ensemble_draws or self.memory_draws > 1,
            "ensemble_draws trains C in the ensemble of the round's M draws: give memory_draws > 1",
        )
        check(
            self.ensemble_penalty == 0 or (self.ensemble_penalty > 0 and self.ensemble_draws),
            f"ensemble_penalty must be >= 0 and needs ensemble_draws, got {self.ensemble_penalty}",
        )
        check(
            not self.keep_memory or (self.memory_draws == 1 and not self.ensemble_draws and not self.check_data_dirs),
            "keep_memory trains no M: it takes no memory_draws, ensemble_draws or check_data_dirs",
        )
        check(self.collect_max_steps >= 1, f"collect_max_steps must be >= 1, got {self.collect_max_steps}")
        check(
            self.check_max_episodes >= 0 and bool(self.check_horizons) and min(self.check_horizons) >= 1,
            "check_max_episodes must be >= 0 and check_horizons >= 1",
        )
        check(self.check_tau >= 0 and self.check_samples >= 1, "check_tau must be >= 0 and check_samples >= 1")
        last = self.collect_seed + self.rounds * self.episodes - 1
        check(
            0 <= self.collect_seed and last < TRAINING.stop,
            f"collection tracks {self.collect_seed}..{last} must lie in [0, {TRAINING.stop:,}) "
            "(real-check and evaluation tracks are held out)",
        )
        check(
            self.train_controller.latents is not None,
            "iterate needs --train-controller.latents: M is retrained on the old and new latents",
        )


def merge_latents(old: LatentEpisodes, new: LatentEpisodes) -> LatentEpisodes:
    """Episodes of ``old`` followed by those of ``new`` (with speeds and yaw rates when both have them).

    Raises:
        EpisodeError: the files come from different vision models or latent sizes.
    """
    if old.z_dim != new.z_dim or old.vision_sha256 != new.vision_sha256:
        raise EpisodeError("cannot merge latent files encoded by different vision models")
    return LatentEpisodes(
        mu=np.concatenate([old.mu, new.mu]),
        logvar=np.concatenate([old.logvar, new.logvar]),
        actions=np.concatenate([old.actions, new.actions]),
        rewards=np.concatenate([old.rewards, new.rewards]),
        terminated=np.concatenate([old.terminated, new.terminated]),
        starts=np.concatenate([old.starts, new.starts[1:] + old.starts[-1]]),
        seeds=np.concatenate([old.seeds, new.seeds]),
        vision_kind=old.vision_kind,
        vision_sha256=old.vision_sha256,
        policies=np.concatenate([np.asarray(old.policies, str), np.asarray(new.policies, str)]),
        speeds=None if old.speeds is None or new.speeds is None else np.concatenate([old.speeds, new.speeds]),
        yaw_rates=None
        if old.yaw_rates is None or new.yaw_rates is None
        else np.concatenate([old.yaw_rates, new.yaw_rates]),
    )


def _write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON atomically (a killed run leaves the old file or the new one, never half of one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))


def _read_round(path: Path) -> dict:
    """A finished round's record. Raises EpisodeError (naming the file) when it is not one."""
    try:
        done = json.loads(path.read_text())
        if not isinstance(done, dict) or not isinstance(done.get("controller"), str):
            raise ValueError("no controller entry")
        return done
    except (OSError, ValueError, RecursionError) as exc:
        raise EpisodeError(f"corrupt round record {path} ({str(exc)[:120]}); delete it to redo the round") from None


def round_check(config: IterateConfig, vision: Path, memory: Path, should_stop: threading.Event) -> dict[str, float]:
    """Dream fidelity of ``memory`` on each of ``config.check_data_dirs`` (see core.divergence): metrics named
    ``check/<dir name>/<divergence metric>``, e.g. ``check/check_agent/road_tracked@100``."""
    from core.divergence import DivergenceConfig, dream_divergence

    out: dict[str, float] = {}
    for data_dir in config.check_data_dirs:
        result = dream_divergence(
            DivergenceConfig(data_dir=Path(data_dir), vision=Path(vision), memory=Path(memory),
                             horizons=config.check_horizons, start_every=100, samples=config.check_samples,
                             tau=config.check_tau, max_episodes=config.check_max_episodes, parked=False),
            should_stop=should_stop,
        )  # fmt: skip
        for k, v in result.metrics.items():
            out[f"check/{Path(data_dir).name}/{k.split('/', 1)[1]}"] = v
    return out


def format_rounds(history: list[tuple[int, dict[str, float]]]) -> str:
    """The per-round report: the noisy controller's collection return, the kept controller's real-check return,
    and per held-out set the share of dreams tracking reality's road at each checked horizon."""
    sets = sorted({k.split("/")[1] for _, m in history for k in m if k.startswith("check/")})
    horizons = sorted({int(k.rsplit("@", 1)[1]) for _, m in history for k in m if "road_tracked@" in k})
    seeds = any("iterate/memory_seed" in m for _, m in history)
    head = f"{'round':>5} {'collect return':>14} {'real check':>10}" + (f" {'M seed':>6}" if seeds else "")
    for name in sets:
        head += "".join(f" {name[:14] + ' @' + str(k):>20}" for k in horizons)
    rows = [head]
    for r, m in history:
        row = f"{r:>5} {m.get('iterate/collect_return', float('nan')):>14.1f} "
        row += f"{m.get('controller/kept_real_return', float('nan')):>10.1f}"
        row += f" {m.get('iterate/memory_seed', float('nan')):>6.0f}" if seeds else ""
        for name in sets:
            row += "".join(f" {m.get(f'check/{name}/road_tracked@{k}', float('nan')):>20.0%}" for k in horizons)
        rows.append(row)
    return "road tracked = share of dreams whose road share stays within +-50% of reality's\n" + "\n".join(rows)


def _memory_config(config: IterateConfig, memory: Path, latents: Path, out: Path) -> MemoryTrainConfig:
    """The round's M training; warm-started from ``memory`` by copying it and its resume state to ``out``."""
    fresh = dataclasses.replace(config.train_memory, latents=latents, out=out, resume=False)
    if not config.warm_start_memory or not resume_path(memory).is_file():
        return fresh
    state = load_resume_state(resume_path(memory), "train-memory", {"epoch": int}, checkpoint=memory)
    epochs_done = int(state["epoch"])
    for source, target in ((memory, out), (resume_path(memory), resume_path(out))):  # same bytes: still a pair
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    return dataclasses.replace(fresh, epochs=epochs_done + config.train_memory.epochs, resume=True)


def draw_score(config: IterateConfig, checks: dict[str, float]) -> tuple[float, float]:
    """How a draw of M ranks (higher is better): the mean over the check sets of the share of dreams tracking
    reality's road at the longest check horizon, then minus the mean latent MSE of the dream there."""
    h = max(config.check_horizons)
    tracked = [v for k, v in checks.items() if k.endswith(f"/road_tracked@{h}")]
    latent = [v for k, v in checks.items() if k.endswith(f"/latent_mse_dream@{h}")]
    return float(np.mean(tracked)) if tracked else -1.0, -float(np.mean(latent)) if latent else 0.0


def _train_round_memory(
    config: IterateConfig, vision: Path, memory: Path, latents: Path, out: Path,
    on_progress: ProgressFn, stop: threading.Event,
) -> tuple[dict[str, float], list[dict], tuple[Path, ...]] | None:  # fmt: skip
    """Train the round's M as ``out`` (``config.memory_draws`` of them beside it, keeping the best by
    :func:`draw_score`); returns the kept M's check metrics, one record per draw and the draws not kept, or None
    when cancelled."""
    round_dir = out.parent
    if config.memory_draws == 1:
        result = train_memory(_memory_config(config, memory, latents, out), on_progress=on_progress, should_stop=stop)
        if result.cancelled:
            return None
        return (round_check(config, vision, out, stop) if config.check_data_dirs else {}), [], ()
    draws: list[dict] = []
    for k in range(config.memory_draws):
        path, seed = round_dir / f"memory_draw{k}.safetensors", config.train_memory.seed + k
        draw_config = dataclasses.replace(_memory_config(config, memory, latents, path), seed=seed)
        if train_memory(draw_config, on_progress=on_progress, should_stop=stop).cancelled or stop.is_set():
            return None
        checks = round_check(config, vision, path, stop)
        draws.append({"memory": str(path), "seed": seed, "score": list(draw_score(config, checks)), "metrics": checks})
    best = max(range(len(draws)), key=lambda i: tuple(draws[i]["score"]))
    kept = Path(draws[best]["memory"])
    for source, target in ((kept, out), (resume_path(kept), resume_path(out))):
        if source.is_file():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    others = tuple(Path(d["memory"]) for i, d in enumerate(draws) if i != best)
    return {**draws[best]["metrics"], "iterate/memory_seed": float(draws[best]["seed"])}, draws, others


def iterate(
    config: IterateConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Run ``config.rounds`` rounds of Ha's iterative procedure and return the last round's controller.

    Reports its own ``iterate`` progress (one step per round, ``iterate/collect_return``: mean return of the
    noisy controller's new episodes) and forwards the sub-stages' reports (collect, encode, memory, controller).

    Raises:
        Whatever the sub-stages raise (CheckpointError, EpisodeError, WorkerCrashed, ...); finished rounds stay
        on disk and a rerun continues after them. OutputError: ``config.out_dir`` cannot be written (checked first).
        ConfigError: ``config.dream_starts`` is not a file.
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    check_output_dir(config.out_dir, "rounds directory")
    if config.dream_starts is not None and not Path(config.dream_starts).is_file():
        raise ConfigError(f"--dream-starts: no latent file at {config.dream_starts}")
    base = config.train_controller
    vision, memory = base.vision, base.memory
    assert base.latents is not None  # IterateConfig refuses a run without them
    # M's training data; with keep_memory, the dreams' starts
    latents = Path(config.dream_starts if config.keep_memory and config.dream_starts else base.latents)
    out_dir = Path(config.out_dir)
    metrics: dict[str, float] = {}
    history: list[tuple[int, dict[str, float]]] = []

    def report(step: int, message: str) -> None:
        on_progress(Progress("iterate", step, config.rounds, dict(metrics), message))

    controller = config.start_controller
    first = out_dir / "round_0" / "round.json"
    if controller is None and first.is_file():
        controller = Path(_read_round(first)["controller"])
    elif controller is None:
        controller = out_dir / "round_0" / "controller.safetensors"
        report(0, f"round 0: training the first controller in the dream -> {controller}")
        result = train_controller(dataclasses.replace(base, out=controller, resume=False),
                                  on_progress=on_progress, should_stop=stop)  # fmt: skip
        if result.cancelled or result.checkpoint is None:
            return StageResult(result.checkpoint, result.metrics, True, time.perf_counter() - t0, history)
        _write_json(first, {"controller": str(controller)})
    for r in range(1, config.rounds + 1):
        round_dir = out_dir / f"round_{r}"
        marker = round_dir / "round.json"
        if marker.is_file():
            done = _read_round(marker)
            memory, latents, controller = Path(done["memory"]), Path(done["latents"]), Path(done["controller"])
            report(r, f"round {r} already done")
            continue
        # -- 1. collect with the current controller plus exploration noise --
        seed = config.collect_seed + (r - 1) * config.episodes
        report(r - 1, f"round {r}: collecting {config.episodes} episodes with {controller} (noise {config.noise_std})")
        factory = ControllerPolicyFactory(
            WorldModelFiles.read(vision, memory, controller),
            config.noise_std,
            excursion_prob=config.excursion_prob,
            noise_corr_steps=config.noise_corr_steps,
            gas_hold_prob=config.gas_hold_prob,
            stop_prob=config.stop_prob,
        )
        collect_config = CollectConfig(
            out_dir=round_dir / "episodes", episodes=config.episodes, seed=seed, max_steps=config.collect_max_steps,
            workers=base.workers, executor=base.executor, ray_address=base.ray_address,
        )  # fmt: skip
        collect(collect_config, factory, on_progress=on_progress, should_stop=stop)
        if stop.is_set():
            break
        # the round's whole collection, episodes kept on disk from an interrupted run (or put there) included
        paths = [episode_path(collect_config.out_dir, seed + i) for i in range(config.episodes)]
        metrics["iterate/collect_return"] = float(np.mean([read_episode(f, frames=False).rewards.sum() for f in paths]))
        # -- 2. encode the new episodes, 3. merge with the old latents --
        new_latents = round_dir / "latents_new.npz"
        train_encode(EncodeConfig(data_dir=round_dir / "episodes", vision=vision, out=new_latents),
                     on_progress=on_progress, should_stop=stop)  # fmt: skip
        merged = merge_latents(LatentEpisodes.load(latents), LatentEpisodes.load(new_latents))
        merged_path = merged.save(round_dir / "latents.npz")
        # -- 4. retrain M on old + new (keep_memory: keep M, the merged file starts the dreams) --
        memory_out = memory if config.keep_memory else round_dir / "memory.safetensors"
        trained: tuple[dict[str, float], list[dict], tuple[Path, ...]] | None = ({}, [], ())
        if not config.keep_memory:
            report(r - 1, f"round {r}: training {config.memory_draws} M(s), dream fidelity on the held-out sets")
            trained = _train_round_memory(config, Path(vision), memory, merged_path, memory_out, on_progress, stop)
        if trained is None:
            break
        metrics.update(trained[0])
        # -- 5. retrain C in the new dream, from the current controller (or from the start) --
        controller_out = round_dir / "controller.safetensors"
        init = base.init_controller if config.controller_from_start else controller
        others = trained[2] if config.ensemble_draws else ()
        controller_config = dataclasses.replace(
            base,
            dream_ensemble=others or base.dream_ensemble,
            disagreement_penalty=config.ensemble_penalty if others else base.disagreement_penalty,
            memory=memory_out,
            latents=merged_path if config.keep_memory else config.dream_starts or merged_path,
            out=controller_out,
            init_controller=init,
            resume=False,
        )
        result = train_controller(controller_config, on_progress=on_progress, should_stop=stop)
        if result.cancelled or result.checkpoint is None:
            break
        memory, latents, controller = memory_out, merged_path, controller_out
        metrics.update({k: v for k, v in result.metrics.items() if k.startswith("controller/kept")})
        _write_json(marker, {"memory": str(memory), "latents": str(latents), "controller": str(controller),
                             "metrics": metrics, "memory_draws": trained[1]})  # fmt: skip
        history.append((r, dict(metrics)))
        report(r, f"round {r} done: {controller}")
    else:
        return StageResult(controller, metrics, False, time.perf_counter() - t0, history)
    return StageResult(controller, metrics, True, time.perf_counter() - t0, history)
