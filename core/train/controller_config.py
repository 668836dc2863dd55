"""The settings of the ``train-controller`` stage (:mod:`core.train.controller`) and their checks: population,
rollouts, dream horizon and starts, temperature, real checks and how they choose the kept controller, workers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.config import SHIPPED_HIDDEN_DIM, SHIPPED_Z_DIM, check, check_finite
from core.data.seeds import MODEL_SELECTION
from core.memory_budget import check_fits_in_memory
from core.parallel import EXECUTOR_KINDS, ExecutorKind
from core.train.fitness import dream_rollout_bytes

Evaluator = Literal["dream", "real"]
CheckCandidate = Literal["best", "mean"]
CheckIn = Literal["real", "dream"]


@dataclass(frozen=True)
class ControllerTrainConfig:
    """Train the controller (C) with CMA-ES, in the dream (default) or in the real env."""

    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint (V): real rollouts and checks encode frames with it; recorded in the controller."""
    memory: Path = Path("runs/memory.safetensors")
    """MDN-RNN checkpoint (M): the dream, and h in real rollouts."""
    dream_ensemble: tuple[Path, ...] = ()
    """More MDN-RNN checkpoints (same sizes as --memory) to dream in as an ensemble: rollout r of every candidate
    is dreamt by model r mod K (K = 1 + their number; --memory is model 0), so fitness averages over all of
    them; the controller reads --memory's h throughout, as in reality. Dream checks use the ensemble too."""
    disagreement_penalty: float = 0.0
    """With --dream-ensemble: take lambda times the members' disagreement about the next z (the standard deviation of
    their predicted means, RMS over z; core.train.disagreement) off the dream's reward at every step, so a
    controller is not paid where the models part, i.e. where the data never went (MOPO, Yu et al., 2020). 0: off."""
    disagreement_free: float = 0.0
    """With --disagreement-penalty: the disagreement left free, so the penalty is lambda * max(0, u - this): the
    data's usual disagreement costs nothing and the penalty ranks only the unusual states (its percentiles along
    real episodes: scripts/disagreement_along_data.py; 0: MOPO's penalty)."""
    halt_disagreement: float = 0.0
    """With --dream-ensemble: a dream ends at the first step where the members' disagreement (as for
    --disagreement-penalty) exceeds this, and --halt-penalty is taken off its return (MOReL's HALT state, Kidambi et
    al., 2020): a controller gains nothing by driving where the models part. 0: off."""
    halt_penalty: float = 100.0
    """Return taken off a dream that halts (--halt-disagreement), in reward units (CarRacing's own leaving the
    playfield costs 100)."""
    latents: Path | None = Path("runs/latents.npz")
    """Latent file (from `encode`) whose real frames start the dreams, with M's state after the real prefix
    (None or a missing file: z ~ N(0, I), h = 0)."""
    out: Path = Path("runs/controller.safetensors")
    """Controller checkpoint to write (the kept controller); the CMA-ES state goes next to it as .resume.pt."""
    evaluator: Evaluator = "dream"
    """Fitness from "dream" rollouts (batched through M, seconds per generation) or "real" CarRacing-v3
    rollouts in worker processes (about an hour per generation of 64 x 16 on 2 cores)."""
    population: int = 64
    """CMA-ES candidates per generation (Ha: 64)."""
    rollouts: int = 16
    """Rollouts per candidate; fitness is their mean return (Ha: 16)."""
    generations: int = 300
    """Generations in total (a resumed run continues up to this number)."""
    sigma0: float = 0.1
    """Initial CMA-ES step size (Ha's estool: 0.1) around the initial mean (zeros or --init-controller)."""
    tau: float = 1.15
    """Dream temperature; slightly above 1 makes dream-trained agents robust in reality (Ha, sec. 4.5)."""
    dream_bf16: bool = True
    """Dream evaluator: bfloat16 matrix products (BatchedDream's bf16) where this CPU runs them faster than float32
    (measured at the start: core.precision; where bfloat16 is emulated it is many times slower), at an unchanged
    dream return (speed and precision: scripts/bench_dream_precision.py; figures in docs/deviations.md)."""
    max_steps: int = 1000
    """Steps per rollout at most (CarRacing's limit: 1000): the dreams' horizon (real checks then drive whole
    episodes, as `evaluate` does), or with --evaluator real the real rollouts and checks."""
    start_step_min: int = 0
    """Dreams start from real frames at time steps start_step_min..start_step_max of the latent file's episodes
    (0 = the first frame, inside CarRacing's zoom-in, where every real episode starts)."""
    start_step_max: int = 100
    """Latest real time step a dream starts from."""
    real_check_every: int = 10
    """Every this many generations (and after the last), check a controller (--check-candidate) on real tracks
    (or in fixed dreams: --check-in); the best on these checks is kept (0: never; the best by fitness is kept)."""
    real_check_episodes: int = 8
    """Real tracks per check (seeds 900,000.., held apart from training and evaluation tracks)."""
    check_in: CheckIn = "real"
    """Where the checks run: "real" tracks (costs real-env steps), or "dream": --dream-check-rollouts fixed
    dreams (the same seeds and starts at every check, at the run's --tau and --max-steps), so a dream-trained
    run chooses its snapshot without stepping the real env (needs --evaluator dream; no --recheck-top)."""
    dream_check_rollouts: int = 192
    """Dreams per dream check (--check-in dream)."""
    check_candidate: CheckCandidate = "best"
    """Which controller a real check drives: the generation's "best" candidate by its dream fitness, or the
    CMA-ES "mean" after the generation's update (Hansen's tutorial, sec. 4: the mean is the estimate of the
    optimum; Ha's estool evaluated the mean, as a noisy fitness makes the best candidate partly luck)."""
    check_patience: int = 0
    """Stop after this many real checks in a row that do not beat the kept controller's: the dream's fitness
    still climbs while reality's has stopped (0: never; run all generations)."""
    recheck_top: int = 0
    """At the end, the this-many best checked controllers drive --recheck-episodes more tracks, and the kept one
    is the best by its mean over all its real tracks: the best of many small checks is biased upwards by the
    choosing (0: keep the best single check)."""
    recheck_episodes: int = 16
    """Further real tracks per rechecked controller (model-selection seeds after the checks' own)."""
    early_stop_patience: int = 100
    """Real fitness rollouts stop after this many steps in a row without a positive reward (off the track or
    stuck), counting -0.1 for every remaining step (0: never). Checks and `evaluate` never stop early."""
    init_controller: Path | None = None
    """Controller checkpoint whose parameters are the initial CMA-ES mean (default: zeros). A V-only one may
    start a full controller: its z weights and biases, zero weights on h, so it starts with the same actions."""
    check_init: bool = False
    """With --init-controller and checks on: check the initial controller first, as generation 0, on the same
    tracks (or dreams) as every later check, so the run keeps it unless a later check beats it and --recheck-top
    weighs it with the rest: a fine-tune never ends with a controller its own checks rank below its start."""
    v_only: bool = False
    """Train a V-only controller: it sees z without h (Ha's baseline; 99 parameters)."""
    seed: int = 0
    """Seed of CMA-ES sampling and of every generation's tracks, dream seeds and starts."""
    threads: int = 2
    """Torch threads of this process, which steps the dreams (one per core; 1 when other work shares the cores,
    where oversubscribed threads run several times slower). Restored when the stage ends."""
    workers: int = 2
    """Parallel real rollouts (worker processes, or Ray CPUs)."""
    executor: ExecutorKind = "local"
    """Where real rollouts run: "local" worker processes or a "ray" cluster."""
    ray_address: str | None = None
    """Ray cluster to join with --executor ray ("auto", "host:6379", "ray://host:10001"; default: start a
    local Ray instance)."""
    resume: bool = False
    """Continue the CMA-ES run saved next to --out (same population and controller size)."""

    def __post_init__(self) -> None:
        check_finite(self)
        check(self.evaluator in ("dream", "real"), f"evaluator must be dream or real, got {self.evaluator!r}")
        check(self.population >= 4, f"population must be >= 4, got {self.population}")
        check(self.rollouts >= 1, f"rollouts must be >= 1, got {self.rollouts}")
        check(self.generations >= 1, f"generations must be >= 1, got {self.generations}")
        check(self.sigma0 > 0, f"sigma0 must be > 0, got {self.sigma0}")
        check(self.tau >= 0, f"tau must be >= 0, got {self.tau}")
        check(self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        check(
            0 <= self.start_step_min <= self.start_step_max,
            f"need 0 <= start_step_min <= start_step_max, got {self.start_step_min}, {self.start_step_max}",
        )
        check(self.real_check_every >= 0, f"real_check_every must be >= 0, got {self.real_check_every}")
        check(
            not self.check_init or (self.init_controller is not None and self.real_check_every > 0),
            "check_init needs init_controller and real_check_every > 0 (there is no start, or no check, to make)",
        )
        check(
            1 <= self.real_check_episodes <= MODEL_SELECTION.stop - MODEL_SELECTION.start,
            f"real_check_episodes must be in 1..100000, got {self.real_check_episodes}",
        )
        check(self.check_in in ("real", "dream"), f"check_in must be real or dream, got {self.check_in!r}")
        check(self.dream_check_rollouts >= 1, f"dream_check_rollouts must be >= 1, got {self.dream_check_rollouts}")
        check(
            self.check_in == "real" or self.evaluator == "dream",
            "check_in dream needs evaluator dream (a real-env run has no dream to check in)",
        )
        check(
            self.check_in == "real" or not self.recheck_top,
            "recheck_top drives real tracks; with check_in dream use a larger dream_check_rollouts instead",
        )
        check(
            self.check_candidate in ("best", "mean"),
            f"check_candidate must be best or mean, got {self.check_candidate!r}",
        )
        check(self.check_patience >= 0, f"check_patience must be >= 0, got {self.check_patience}")
        check(self.recheck_top >= 0, f"recheck_top must be >= 0, got {self.recheck_top}")
        check(
            1 <= self.real_check_episodes + self.recheck_episodes <= MODEL_SELECTION.stop - MODEL_SELECTION.start,
            f"real_check_episodes + recheck_episodes must be <= 100000, got {self.recheck_episodes}",
        )
        check(self.recheck_episodes >= 1, f"recheck_episodes must be >= 1, got {self.recheck_episodes}")
        check(
            not (self.recheck_top or self.check_patience) or self.real_check_every > 0,
            "check_patience and recheck_top need real checks (real_check_every > 0)",
        )
        check(self.early_stop_patience >= 0, f"early_stop_patience must be >= 0, got {self.early_stop_patience}")
        check(
            not self.dream_ensemble or self.evaluator == "dream",
            "dream_ensemble needs evaluator dream (the real env has no ensemble to dream in)",
        )
        check(
            self.disagreement_penalty == 0 or (self.disagreement_penalty > 0 and bool(self.dream_ensemble)),
            f"disagreement_penalty must be >= 0 and needs --dream-ensemble, got {self.disagreement_penalty}",
        )
        check(
            self.halt_disagreement == 0 or (self.halt_disagreement > 0 and bool(self.dream_ensemble)),
            f"halt_disagreement must be >= 0 and needs --dream-ensemble, got {self.halt_disagreement}",
        )
        check(self.disagreement_free >= 0, f"disagreement_free must be >= 0, got {self.disagreement_free}")
        check(self.halt_penalty >= 0, f"halt_penalty must be >= 0, got {self.halt_penalty}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.threads >= 1, f"threads must be >= 1, got {self.threads}")
        check(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        check(self.executor in EXECUTOR_KINDS, f"executor must be local or ray, got {self.executor!r}")
        n_params = 3 * (SHIPPED_Z_DIM + (0 if self.v_only else SHIPPED_HIDDEN_DIM) + 1)
        if self.evaluator == "dream":
            what = f"population {self.population} x rollouts {self.rollouts} (dreams stepped as one batch, ~{dream_rollout_bytes(n_params) / 1024:.1f} KiB each with the shipped model sizes)"
            needed = self.population * self.rollouts * dream_rollout_bytes(n_params)
        else:
            what = f"population {self.population} (CMA-ES candidates of {n_params} parameters)"
            needed = 0
        check_fits_in_memory(what, needed + 3 * 8 * self.population * n_params)
