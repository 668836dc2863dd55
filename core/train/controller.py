"""The ``train-controller`` stage: CMA-ES over the linear controller, in the dream or in the real env.

Ha & Schmidhuber (2018), sec. 3: C (867 parameters) is trained by CMA-ES (Hansen, 2016, "The CMA Evolution
Strategy: A Tutorial") with fitness = mean return over several rollouts per candidate (population 64 x 16
rollouts); sec. 4.3-4.5: trained inside the dream at a temperature slightly above 1, the agent transfers to
reality. Two fitness evaluators share one interface (:class:`FitnessEvaluator`):

- :class:`DreamEvaluator` steps every candidate x rollout as one :class:`BatchedDream` (N = 1024 for 64 x 16)
  through M, whose reward and done heads give the returns. Dreams start from real encoded frames (with M's
  state after the real prefix) sampled from the latent file, or from z ~ N(0, I).
- :class:`RealEvaluator` runs CarRacing-v3 through the ``[z, h]`` wrapper on an executor (local worker
  processes or Ray), optionally stopping hopeless episodes early.

Every ``real_check_every`` generations the generation's best candidate drives on real validation tracks; the
controller kept at ``out`` is the best on those checks (until the first check: the best by fitness). All
candidates of a generation share its random choices (tracks, dream seeds, starts): common random numbers make
the ranking less noisy. Track seeds: real training rollouts in [0, 900,000), real checks in
[900,000, 1,000,000), evaluation from 1,000,000 (:data:`core.evaluate.EVAL_SEED_START`), so they never overlap
(the ranges: :mod:`core.data.seeds`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from gymnasium.utils import seeding
from torch import Tensor

from core.checkpoint import (
    check_output_file,
    load_model,
    load_resume_state,
    resume_path,
    resuming,
    save_checkpoint,
    save_resume_state,
)
from core.config import SHIPPED_HIDDEN_DIM, SHIPPED_Z_DIM, check_finite, check_fits_in_memory
from core.data.datasets import LatentEpisodes, file_sha256
from core.data.seeds import MODEL_SELECTION, TRAINING
from core.envs.dream import BatchedDream
from core.envs.world_model import WorldModel
from core.errors import CheckpointError, ConfigError
from core.evaluate import RealRollout, RealRolloutSpec, real_rollout_task
from core.models.controller import Controller, ControllerConfig, batched_actions
from core.models.mdnrnn import MDNRNN
from core.parallel import EXECUTOR_KINDS, Executor, ExecutorKind, TaskFailed, WorkerCrashed, make_executor
from core.policies_wm import WorldModelFiles
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult

REAL_CHECK_SEED_START = MODEL_SELECTION.start
"""Real checks drive on tracks REAL_CHECK_SEED_START.. (validation); real training rollouts stay below it."""
NON_FINITE_FITNESS = -1e6
"""Fitness given to a candidate whose return is NaN or infinite (ranked last; CMA-ES uses ranks only)."""
START_POOL = 1024
"""Real starting states drawn from the latent file once per run; each generation samples from them."""
DIVERGED_WARNING = 0.1
"""Warn (once per run) when more than this share of a generation's dreams leave the range of real latents."""
RESUME_FORMAT = 1

Evaluator = Literal["dream", "real"]


@dataclass(frozen=True)
class ControllerTrainConfig:
    """Train the controller (C) with CMA-ES, in the dream (default) or in the real env."""

    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint (V): real rollouts and checks encode frames with it; recorded in the controller."""
    memory: Path = Path("runs/memory.safetensors")
    """MDN-RNN checkpoint (M): the dream, and h in real rollouts."""
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
    """Dream evaluator: bfloat16 matrix products (BatchedDream's bf16): 1.5x the candidate-rollouts/s with the
    controller in the loop; the shipped controller's dream return over the same 1024 dreams x 1000 steps was
    -94.13 +- 16.49 vs -94.37 +- 16.15 in float32 (scripts/bench_dream_precision.py)."""
    max_steps: int = 1000
    """Steps per rollout at most, dream and real (CarRacing's own limit is 1000)."""
    start_step_min: int = 0
    """Dreams start from real frames at time steps start_step_min..start_step_max of the latent file's episodes
    (0 = the first frame, inside CarRacing's zoom-in, where every real episode starts)."""
    start_step_max: int = 100
    """Latest real time step a dream starts from."""
    real_check_every: int = 10
    """Every this many generations (and after the last), drive the generation's best candidate on real tracks;
    the best on these checks is kept (0: never; the best by fitness is kept)."""
    real_check_episodes: int = 8
    """Real tracks per check (seeds 900,000.., held apart from training and evaluation tracks)."""
    early_stop_patience: int = 100
    """Real fitness rollouts stop after this many steps in a row without a positive reward (off the track or
    stuck), counting -0.1 for every remaining step (0: never). Checks and `evaluate` never stop early."""
    init_controller: Path | None = None
    """Controller checkpoint whose parameters are the initial CMA-ES mean (default: zeros). A V-only one may
    start a full controller: its z weights and biases, zero weights on h, so it starts with the same actions."""
    v_only: bool = False
    """Train a V-only controller: it sees z without h (Ha's baseline; 99 parameters)."""
    seed: int = 0
    """Seed of CMA-ES sampling and of every generation's tracks, dream seeds and starts."""
    threads: int = 2
    """Torch threads of this process, which steps the dreams (one per core; 1 is faster when other work shares
    the cores: 2 threads on 2 busy cores were 4x slower here). Restored when the stage ends."""
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
        checks = [
            (self.evaluator in ("dream", "real"), f"evaluator must be dream or real, got {self.evaluator!r}"),
            (self.population >= 4, f"population must be >= 4, got {self.population}"),
            (self.rollouts >= 1, f"rollouts must be >= 1, got {self.rollouts}"),
            (self.generations >= 1, f"generations must be >= 1, got {self.generations}"),
            (self.sigma0 > 0, f"sigma0 must be > 0, got {self.sigma0}"),
            (self.tau >= 0, f"tau must be >= 0, got {self.tau}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (
                0 <= self.start_step_min <= self.start_step_max,
                f"need 0 <= start_step_min <= start_step_max, got {self.start_step_min}, {self.start_step_max}",
            ),
            (self.real_check_every >= 0, f"real_check_every must be >= 0, got {self.real_check_every}"),
            (
                1 <= self.real_check_episodes <= MODEL_SELECTION.stop - MODEL_SELECTION.start,
                f"real_check_episodes must be in 1..100000, got {self.real_check_episodes}",
            ),
            (
                self.early_stop_patience >= 0,
                f"early_stop_patience must be >= 0, got {self.early_stop_patience}",
            ),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.executor in EXECUTOR_KINDS, f"executor must be local or ray, got {self.executor!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        n_params = 3 * (SHIPPED_Z_DIM + (0 if self.v_only else SHIPPED_HIDDEN_DIM) + 1)
        if self.evaluator == "dream":
            what = f"population {self.population} x rollouts {self.rollouts} (dreams stepped as one batch, ~{dream_rollout_bytes(n_params) / 1024:.1f} KiB each with the shipped model sizes)"
            needed = self.population * self.rollouts * dream_rollout_bytes(n_params)
        else:
            what = f"population {self.population} (CMA-ES candidates of {n_params} parameters)"
            needed = 0
        check_fits_in_memory(what, needed + 3 * 8 * self.population * n_params)


def dream_rollout_bytes(n_params: int, z_dim: int = SHIPPED_Z_DIM, hidden_dim: int = SHIPPED_HIDDEN_DIM, n_gaussians: int = 5) -> int:
    """Estimated bytes per dream of :class:`DreamEvaluator`'s batch: its candidate's float32 weights, the LSTM
    state, observation, the step's mixture parameters and their temporaries (about 3 copies), in float32."""
    return 4 * (n_params + 3 * (4 * hidden_dim + 2 * z_dim + 3 * n_gaussians * z_dim + 8))


# -- CMA-ES ----------------------------------------------------------------------------------------------------
def _import_cma() -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cma warns at import when matplotlib is missing
        import cma
        from cma.sigma_adaptation import CMAAdaptSigmaCSA
    return cma, CMAAdaptSigmaCSA


class CMAES:
    """Hansen's CMA-ES (the ``cma`` package) maximising a return, with a state that round-trips through tensors.

    Options: cumulative step-size adaptation (CSA, as the ``cma`` 2.x that Ha's estool used), active covariance
    update (cma's default), no mirrored sampling, no output; the caller sets the run length (``es.stop()``'s
    termination criteria are never consulted).
    Samples come from a dedicated Mersenne Twister seeded with ``seed`` (cma's ``randn`` option), so nothing
    else using NumPy's global RNG changes the run. ``cma`` minimises; :meth:`tell` negates the returns.

    Args:
        x0: float64 (n,) initial mean. sigma0: initial step size. popsize: candidates per generation (>= 4).
        seed: sampling seed.
    """

    def __init__(self, x0: np.ndarray, sigma0: float, popsize: int, seed: int) -> None:
        cma, csa = _import_cma()
        self._rng = np.random.RandomState(seed)
        opts = {
            "popsize": popsize, "randn": self._rng.randn, "seed": math.nan, "AdaptSigma": csa, "CMA_mirrors": 0,
            "verbose": -9, "verb_disp": 0, "verb_log": 0,
        }  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es = cma.CMAEvolutionStrategy(np.asarray(x0, np.float64), sigma0, opts)
        self.popsize = popsize

    @property
    def sigma(self) -> float:
        """Overall step size."""
        return float(self._es.sigma)

    def ask(self) -> np.ndarray:
        """Sample a generation: float64 (popsize, n)."""
        return np.asarray(self._es.ask(), np.float64)

    def tell(self, candidates: np.ndarray, returns: np.ndarray) -> None:
        """Update from the candidates of :meth:`ask` and their fitness (returns, higher is better), (popsize,)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es.tell(list(candidates), [-float(r) for r in returns])

    def state_dict(self) -> dict[str, Any]:
        """The state that determines the rest of the run, as tensors and numbers: mean m, step size sigma,
        covariance C with its eigendecomposition (B, D, refreshed lazily), evolution paths p_c and p_sigma,
        counters, and the sampling RNG."""
        es, sm = self._es, self._es.sm
        _, keys, pos, has_gauss, cached = self._rng.get_state()
        t = torch.from_numpy
        return {
            "mean": t(np.array(es.mean, np.float64)), "sigma": float(es.sigma),
            "C": t(np.array(sm.C)), "B": t(np.array(sm.B)), "D": t(np.array(sm.D)),
            "pc": t(np.array(es.pc)), "pc2": t(np.array(es.pc2)), "ps": t(np.array(es.adapt_sigma.ps)),
            "sigma_delta": float(es.adapt_sigma.delta),
            "countiter": int(es.countiter), "countevals": int(es.countevals),
            "count_tell": int(sm.count_tell), "last_update": int(sm.last_update), "count_eigen": int(sm.count_eigen),
            "rng_keys": t(keys.astype(np.int64)), "rng_pos": int(pos), "rng_has_gauss": int(has_gauss),
            "rng_cached_gaussian": float(cached),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run saved by :meth:`state_dict` exactly (same samples as if it had never stopped).

        Raises:
            CheckpointError: the state is for another dimension or incomplete.
        """
        try:
            mean = state["mean"].numpy()
            if mean.shape != np.shape(self._es.mean):
                raise CheckpointError(f"CMA-ES state has dimension {mean.shape[0]}, expected {len(self._es.mean)}")
            es, sm = self._es, self._es.sm
            # one throw-away generation creates the attributes cma initialises lazily; everything it changed
            # that matters for the rest of the run is overwritten below
            self.tell(self.ask(), np.zeros(self.popsize))
            es.mean = mean.copy()
            es.sigma = float(state["sigma"])
            sm.C, sm.B, sm.D = state["C"].numpy().copy(), state["B"].numpy().copy(), state["D"].numpy().copy()
            sm.count_tell, sm.last_update = int(state["count_tell"]), int(state["last_update"])
            sm.count_eigen = int(state["count_eigen"])
            es._updateBDfromSM(sm)
            es.pc, es.pc2 = state["pc"].numpy().copy(), state["pc2"].numpy().copy()
            es.adapt_sigma.ps = state["ps"].numpy().copy()
            es.adapt_sigma.delta = float(state["sigma_delta"])
            es.countiter, es.countevals = int(state["countiter"]), int(state["countevals"])
            keys = state["rng_keys"].numpy().astype(np.uint32)
            rng_state = ("MT19937", keys, int(state["rng_pos"]), int(state["rng_has_gauss"]),
                         float(state["rng_cached_gaussian"]))  # fmt: skip
            self._rng.set_state(rng_state)
        except (KeyError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"CMA-ES resume state is incomplete ({type(exc).__name__}: {exc})") from None


# -- per-generation random choices ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationPlan:
    """The random choices of one generation, shared by all its candidates (common random numbers).

    Attributes:
        track_seeds: int64 (R,) real track seeds, in [0, REAL_CHECK_SEED_START).
        dream_seeds: int64 (R,) dream seeds, as ``DreamEnv.reset(seed=...)`` takes them.
        starts: int64 (R,) indices into the dream start pool (zeros without one).
    """

    track_seeds: np.ndarray
    dream_seeds: np.ndarray
    starts: np.ndarray


def generation_plan(seed: int, generation: int, rollouts: int, n_starts: int) -> GenerationPlan:
    """The plan of ``generation`` (0-based) of the run seeded ``seed``; the same arguments give the same plan."""
    rng = np.random.default_rng([seed, generation])
    return GenerationPlan(
        track_seeds=rng.integers(TRAINING.start, TRAINING.stop, rollouts),
        dream_seeds=rng.integers(0, 2**31, rollouts),
        starts=rng.integers(0, max(1, n_starts), rollouts),
    )


def real_check_seeds(episodes: int) -> list[int]:
    """Track seeds of the real checks: REAL_CHECK_SEED_START + 0 .. episodes - 1 (the same at every check)."""
    return [REAL_CHECK_SEED_START + i for i in range(episodes)]


def dream_stream_seed(seed: int) -> int:
    """The noise-stream seed :class:`DreamEnv` derives in ``reset(seed=seed)``, so a batched rollout with dream
    seed ``s`` is the rollout ``DreamEnv.reset(seed=s)`` gives."""
    rng, _ = seeding.np_random(int(seed))
    return int(rng.integers(0, 2**62))


# -- dream starts ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DreamStarts:
    """Real starting states of dreams.

    Attributes:
        z: float32 (S, z_dim), the posterior mean of the real frame at step ``steps[i]`` of episode
            ``episodes[i]`` of the latent file.
        h, c: float32 (S, hidden_dim), M's LSTM state after that episode's real z_0..z_{t-1} and actions
            a_0..a_{t-1} (zeros at t = 0): what the real env's ``[z, h]`` wrapper holds there.
        episodes, steps: int64 (S,) where each start comes from.
    """

    z: Tensor
    h: Tensor
    c: Tensor
    episodes: np.ndarray
    steps: np.ndarray

    def __len__(self) -> int:
        return len(self.z)

    @classmethod
    @torch.no_grad()
    def from_latents(
        cls, latents: LatentEpisodes, memory: MDNRNN, count: int, step_min: int, step_max: int, seed: int
    ) -> DreamStarts:
        """Draw ``count`` (episode, t) with t uniform in [step_min, step_max] (clipped to the episode) and run M
        over each real prefix.

        Raises:
            CheckpointError: the latents' size differs from M's z_dim.
        """
        if latents.z_dim != memory.config.z_dim:
            raise CheckpointError(f"latent file has z_dim {latents.z_dim}, the memory model {memory.config.z_dim}")
        rng = np.random.default_rng([seed, 1])
        episodes = rng.integers(0, latents.n_episodes, count)
        lengths = np.diff(latents.starts) - 1  # steps per episode; frames are steps + 1
        hi = np.minimum(step_max, lengths[episodes])
        t = rng.integers(np.minimum(step_min, hi), hi + 1)
        horizon = int(t.max())
        z0 = np.empty((count, latents.z_dim), np.float32)
        prefix_z = np.zeros((count, horizon, latents.z_dim), np.float32)
        prefix_a = np.zeros((count, horizon, 3), np.float32)
        for i, (e, ti) in enumerate(zip(episodes, t, strict=True)):
            ep = latents.episode(int(e))
            z0[i] = ep["mu"][ti]
            prefix_z[i, :ti] = ep["mu"][:ti]
            prefix_a[i, :ti] = ep["action"][:ti]
        lstm = memory.lstm
        h = torch.zeros(count, memory.config.hidden_dim)
        c = torch.zeros_like(h)
        t_live = torch.from_numpy(t)
        x_all = torch.from_numpy(np.concatenate([prefix_z, prefix_a], axis=2))
        for k in range(horizon):  # one LSTM step for every start still inside its prefix
            h_new, c_new = torch.lstm_cell(
                x_all[:, k], (h, c), lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
            )
            live = (t_live > k).unsqueeze(1)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        return cls(torch.from_numpy(z0), h, c, episodes, t)


# -- fitness evaluators ------------------------------------------------------------------------------------------
class FitnessEvaluator(Protocol):
    """Returns of candidate controllers: the interface behind ``--evaluator dream|real``.

    An evaluator may also expose ``metrics: dict[str, float]``, namespaced metrics of its last call, which
    the stage reports with the generation's (the dream evaluator's ``controller/dream_diverged``).
    """

    def rollout_returns(
        self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event
    ) -> np.ndarray | None:
        """Run every candidate (float64 (P, n_params), as ``Controller.get_flat``) on the plan's R rollouts.

        Returns:
            float64 (P, R) returns (NaN where a model produced NaN), or None when ``should_stop`` was set.

        Raises:
            WorkerCrashed / TaskFailed: a worker died or failed (real rollouts).
        """
        ...


def _split_params(candidates: np.ndarray, input_dim: int) -> tuple[Tensor, Tensor]:
    """Flat parameters (P, 3 * input_dim + 3) -> weights float32 (P, 3, input_dim), biases (P, 3)."""
    flat = torch.as_tensor(candidates, dtype=torch.float32)
    return flat[:, : 3 * input_dim].reshape(-1, 3, input_dim), flat[:, 3 * input_dim :]


class DreamEvaluator:
    """All candidates x rollouts dreamt as one batch through M (Ha & Schmidhuber, 2018, sec. 4.3).

    Rollout ``p * R + r`` is candidate p on the plan's rollout r: dream seed ``plan.dream_seeds[r]`` (its noise
    stream, as :func:`dream_stream_seed`) and start ``plan.starts[r]``; its return is the sum of M's reward
    head over its steps until the done head fires or ``max_steps``. The returns equal stepping a
    :class:`DreamEnv` per rollout with ``reset(seed=dream_seed, options={"z": z, "state": (h, c)})``.

    After each call, ``metrics["controller/dream_diverged"]`` is the share of rollouts whose ``|z|`` exceeded
    ``z_norm_limit`` at some step: dreams of an unstable M running off the range of real latents, where its
    reward head means nothing.

    Args:
        memory: the MDN-RNN. controller_config: sizes of the candidates (hidden_dim 0: they see z alone).
        tau: temperature. max_steps: horizon. starts: real starting states (None: z ~ N(0, I), h = 0).
        z_norm_limit: ``|z|`` beyond which a dream counts as diverged (default ``2 (sqrt(z_dim) + 4)``, twice
            what N(0, I) latents stay below).
    """

    def __init__(
        self, memory: MDNRNN, controller_config: ControllerConfig, tau: float, max_steps: int,
        starts: DreamStarts | None = None, z_norm_limit: float | None = None, bf16: bool = False,
    ) -> None:  # fmt: skip
        self.memory = memory.eval()
        self.bf16 = bf16
        self.config = controller_config
        self.tau, self.max_steps, self.starts = tau, max_steps, starts
        default_limit = 2.0 * (math.sqrt(memory.config.z_dim) + 4.0)
        self.z_norm_limit = z_norm_limit if z_norm_limit is not None else default_limit
        self.metrics: dict[str, float] = {}

    @torch.no_grad()
    def rollout_returns(
        self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event | None = None
    ) -> np.ndarray | None:
        p, r = len(candidates), len(plan.dream_seeds)
        weights, biases = _split_params(candidates, self.config.input_dim)
        weights, biases = weights.repeat_interleave(r, 0), biases.repeat_interleave(r, 0)
        dream = BatchedDream(self.memory, p * r, tau=self.tau, max_steps=self.max_steps, bf16=self.bf16)
        seeds = np.tile([dream_stream_seed(s) for s in plan.dream_seeds], p)
        if self.starts is None:
            obs = dream.reset(seeds)
        else:
            idx = torch.from_numpy(np.tile(plan.starts, p))
            state = (self.starts.h[idx].unsqueeze(0), self.starts.c[idx].unsqueeze(0))
            obs = dream.reset(seeds, z=self.starts.z[idx], state=state)
        z_dim = self.memory.config.z_dim
        total = torch.zeros(p * r, dtype=torch.float64)
        diverged = torch.zeros(p * r, dtype=torch.bool)
        for _ in range(self.max_steps):
            if should_stop is not None and should_stop.is_set():
                return None
            seen = obs if self.config.hidden_dim > 0 else obs[:, :z_dim]
            obs, reward, _, _ = dream.step(batched_actions(weights, biases, seen))
            total += reward.double()
            diverged |= dream.z.norm(dim=1) > self.z_norm_limit
            if bool(dream.done.all()):
                break
        self.metrics = {"controller/dream_diverged": float(diverged.float().mean())}
        return total.view(p, r).numpy()


class RealEvaluator:
    """Candidates x rollouts as real CarRacing-v3 episodes on an executor whose payload is a
    :class:`RealRolloutSpec` (V and M as bytes); every candidate's r-th rollout drives ``plan.track_seeds[r]``.

    Args:
        executor: local pool or Ray. early_stop_patience: see ``ControllerTrainConfig.early_stop_patience``.
    """

    def __init__(self, executor: Executor[RealRolloutSpec], early_stop_patience: int = 0) -> None:
        self.executor = executor
        self.early_stop_patience = early_stop_patience

    def rollout_returns(
        self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event | None = None
    ) -> np.ndarray | None:
        p, r = len(candidates), len(plan.track_seeds)
        tasks = [RealRollout(int(s), cand, self.early_stop_patience) for cand in candidates for s in plan.track_seeds]
        returns = np.full(p * r, np.nan)
        done = 0
        for i, ret in self.executor.map_unordered(real_rollout_task, tasks, should_stop=should_stop):
            returns[i] = ret
            done += 1
        return returns.reshape(p, r) if done == len(tasks) else None


def real_returns(
    executor: Executor[RealRolloutSpec],
    params: np.ndarray,
    seeds: list[int],
    should_stop: threading.Event | None,
) -> list[float] | None:
    """Returns of one controller (flat params) on real tracks ``seeds``, no early stop; None when stopped."""
    tasks = [RealRollout(s, params) for s in seeds]
    out = dict(executor.map_unordered(real_rollout_task, tasks, should_stop=should_stop))
    return [out[i] for i in range(len(seeds))] if len(out) == len(seeds) else None


# -- the stage ----------------------------------------------------------------------------------------------------
@dataclass
class _Kept:
    """A controller worth keeping: flat params, its fitness, its mean real-check return (NaN: unchecked)."""

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


def _initial_mean(config: ControllerTrainConfig, controller_config: ControllerConfig, n_params: int) -> np.ndarray:
    if config.init_controller is None:
        return np.zeros(n_params)
    init = load_model(config.init_controller, "controller")
    assert isinstance(init, Controller)
    if init.config == controller_config:
        return init.get_flat()
    if init.config.hidden_dim == 0 and init.config.z_dim == controller_config.z_dim:
        # A V-only controller starts a full one: its z weights and biases, zero weights on h (same actions).
        full = Controller(controller_config)
        with torch.no_grad():
            full.fc.weight.zero_()
            full.fc.weight[:, : init.config.z_dim] = init.fc.weight
            full.fc.bias.copy_(init.fc.bias)
        return full.get_flat()
    raise ConfigError(
        f"--init-controller {config.init_controller} has sizes {init.config}, this run needs {controller_config}"
    )


def _dream_evaluator(
    config: ControllerTrainConfig, memory: MDNRNN, controller_config: ControllerConfig, report: ProgressFn
) -> DreamEvaluator:
    """The run's dream evaluator; with a latent file, dreams start from its real states and count as diverged
    beyond twice the largest real ``|mu|``."""
    if config.latents is not None and not Path(config.latents).is_file():
        message = f"no latent file at {config.latents}: dreams start from z ~ N(0, I), h = 0"
        report(Progress("controller", 0, config.generations, message=message))
    if config.latents is None or not Path(config.latents).is_file():
        return DreamEvaluator(memory, controller_config, config.tau, config.max_steps, bf16=config.dream_bf16)
    latents = LatentEpisodes.load(config.latents)
    if latents.vision_sha256 and latents.vision_sha256 != file_sha256(config.vision):
        message = f"warning: {config.latents} was encoded by another vision model than {config.vision}"
        report(Progress("controller", 0, config.generations, message=message))
    starts = DreamStarts.from_latents(
        latents, memory, START_POOL, config.start_step_min, config.start_step_max, config.seed
    )
    limit = 2.0 * float(np.linalg.norm(latents.mu, axis=1).max())
    return DreamEvaluator(
        memory, controller_config, config.tau, config.max_steps, starts, limit, bf16=config.dream_bf16
    )


def train_controller(
    config: ControllerTrainConfig,
    *,
    evaluator: FitnessEvaluator | None = None,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Train the controller with CMA-ES and write the kept controller to ``config.out``.

    Each generation: ask ``population`` candidates, get their rollouts' returns from the evaluator, tell
    CMA-ES the mean returns (a NaN or infinite one is replaced by ``NON_FINITE_FITNESS`` and reported),
    report ``controller/fitness_best``, ``controller/fitness_mean``, ``controller/fitness_worst`` (over
    finite values) and ``controller/sigma``, save the resume state; every ``real_check_every`` generations
    and after the last one, drive the generation's best candidate on the real check tracks
    (``controller/real_return``) and keep it if it beats every earlier check. The kept controller is written
    whenever it changes, with ``extra`` recording the vision and memory checkpoints.

    Args:
        config: the stage config.
        evaluator: fitness evaluator to use instead of the one ``config.evaluator`` names.
        on_progress: progress callback (one report per generation, plus messages).
        should_stop: stops after the current rollouts; the last finished generation can be resumed.

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
    cmaes = CMAES(_initial_mean(config, controller_config, n_params), config.sigma0, config.population, config.seed)
    kept: _Kept | None = None
    start = 0
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
        on_progress(Progress("controller", start, config.generations, message=f"resumed after generation {start}"))

    check_seeds = real_check_seeds(config.real_check_episodes)
    extra = {
        "vision": str(config.vision), "memory": str(config.memory),
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
            "n_params": n_params, "cma": cmaes.state_dict(),
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
            metrics["controller/real_return"] = kept.real_return
        save_checkpoint(config.out, controller, kind="controller", config=controller_config, metrics=metrics,
                        extra=dict(extra, generation=kept.generation), resume_state=state)  # fmt: skip

    needs_real = (evaluator is None and config.evaluator == "real") or config.real_check_every > 0
    executor: Executor[RealRolloutSpec] | None = None
    history: list[tuple[int, dict[str, float]]] = []
    metrics: dict[str, float] = {}
    generation = start
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        if needs_real:
            spec = RealRolloutSpec(WorldModelFiles.read(config.vision, config.memory), config.max_steps,
                                   include_h=not config.v_only)  # fmt: skip
            executor = make_executor(config.executor, config.workers, spec, config.ray_address)
        if evaluator is None:
            if config.evaluator == "dream":
                evaluator = _dream_evaluator(config, memory, controller_config, on_progress)
            else:
                assert executor is not None
                evaluator = RealEvaluator(executor, config.early_stop_patience)
        n_starts = len(evaluator.starts or ()) if isinstance(evaluator, DreamEvaluator) else 0
        warned_divergence = False
        for generation in range(start, config.generations):
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
            diverged = metrics.get("controller/dream_diverged", 0.0)
            if diverged > DIVERGED_WARNING and not warned_divergence:
                warned_divergence = True
                messages.append(
                    f"warning: {diverged:.0%} of the dreams ran off the range of real latents (|z| > "
                    f"{evaluator.z_norm_limit:.1f}): M is unstable there and its rewards mean nothing; "  # type: ignore[attr-defined]
                    "check M (trained on sampled z?) or lower --tau"
                )
            best = int(np.argmax(told))
            # -- keep the best by fitness until a real check has happened --
            new_kept = finite[best] and (kept is None or (math.isnan(kept.real_return) and fitness[best] > kept.fitness))
            if new_kept:
                kept = _Kept(candidates[best].copy(), float(fitness[best]), math.nan, generation + 1)
            save_resume(generation + 1, bool(new_kept))
            # -- real check of the generation's best --
            last = generation + 1 == config.generations
            due = config.real_check_every and ((generation + 1) % config.real_check_every == 0 or last)
            if due and finite[best] and executor is not None:
                real = real_returns(executor, candidates[best], check_seeds, stop)
                if real is None:
                    break
                real_mean = float(np.mean(real))
                metrics["controller/real_return"] = real_mean
                assert kept is not None
                improved = math.isnan(kept.real_return) or real_mean > kept.real_return
                messages.append(
                    f"real check of the generation's best: {real_mean:.1f} +- {np.std(real):.1f} on "
                    f"{len(real)} tracks" + (" (kept)" if improved else f" (kept one: {kept.real_return:.1f})")
                )
                if improved:
                    kept = _Kept(candidates[best].copy(), float(fitness[best]), real_mean, generation + 1)
                    save_resume(generation + 1, new_kept=True)
            metrics["controller/generation_s"] = time.perf_counter() - tg
            history.append((generation + 1, metrics))
            message = f"generation {generation + 1}: " + "; ".join(messages) if messages else ""
            on_progress(Progress("controller", generation + 1, config.generations, metrics, message))
        else:
            generation = config.generations
    except (WorkerCrashed, TaskFailed) as exc:
        where = f"kept at {config.out}" if kept is not None else "not saved yet (no generation finished)"
        msg = f"{exc}; best controller so far {where}; continue with --resume"
        on_progress(Progress("controller", generation, config.generations, message=msg))
        raise type(exc)(msg) from None
    finally:
        torch.set_num_threads(threads)
        if executor is not None:
            executor.close()
    cancelled = generation < config.generations
    final = dict(metrics)
    if kept is not None:
        final["controller/kept_fitness"] = kept.fitness
        if not math.isnan(kept.real_return):
            final["controller/kept_real_return"] = kept.real_return
    checkpoint = Path(config.out) if kept is not None else None
    return StageResult(checkpoint, final, cancelled, time.perf_counter() - t0, history)


# -- benchmark ----------------------------------------------------------------------------------------------------
def bench_evaluators(
    vision: Path | None = None,
    memory: Path | None = None,
    *,
    population: int = 64,
    rollouts: int = 16,
    max_steps: int = 1000,
    real_rollouts: int = 4,
    workers: int = 2,
    threads: int = 2,
    tau: float = 1.15,
    on_progress: ProgressFn = no_progress,
) -> dict[str, float]:
    """Candidate-rollouts per second of the dream and the real evaluator, measured in one run.

    The dream runs one full generation (``population`` x ``rollouts`` x ``max_steps``); the real evaluator
    ``real_rollouts`` episodes of CMA-ES candidates from the same generation on ``workers`` processes, without
    early stopping, after a warm-up that loads the models in every worker. The dream uses ``threads`` torch
    threads (restored afterwards). Without ``vision``/``memory``, untrained full-size models are used, M's done
    head switched off so every dream runs the full horizon.

    Returns:
        ``bench/dream_generation_s``, ``bench/dream_rollouts_per_s``, ``bench/real_rollouts_per_s``,
        ``bench/real_seconds_per_rollout``, ``bench/speedup`` (dream / real rollouts per second).
    """
    import tempfile

    from core.models.mdnrnn import MDNRNNConfig
    from core.models.vae import ConvVAE, VAEConfig

    with tempfile.TemporaryDirectory(prefix="dream-explorer-bench-") as tmp:
        if vision is None or memory is None:
            torch.manual_seed(0)
            m = MDNRNN(MDNRNNConfig())
            with torch.no_grad():
                m.head.bias[-1] = -20.0  # done probability ~ 0: every dream runs max_steps
            vision, memory = Path(tmp) / "vision.safetensors", Path(tmp) / "memory.safetensors"
            save_checkpoint(vision, ConvVAE(VAEConfig()), kind="conv_vae", config=VAEConfig())
            save_checkpoint(memory, m, kind="mdnrnn", config=m.config)
        wm = WorldModel.load(vision, memory)
        controller_config = ControllerConfig(wm.z_dim, wm.hidden_dim)
        candidates = CMAES(np.zeros(controller_config.input_dim * 3 + 3), 0.1, population, 0).ask()
        plan = generation_plan(0, 0, rollouts, 0)
        on_progress(Progress("bench", 0, 2, message=f"dream: {population} x {rollouts} rollouts x {max_steps} steps"))
        dream = DreamEvaluator(wm.require_memory(), controller_config, tau, max_steps)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            t = time.perf_counter()
            dream.rollout_returns(candidates, plan)
            dream_s = time.perf_counter() - t
        finally:
            torch.set_num_threads(previous)
        on_progress(Progress("bench", 1, 2, {"bench/dream_generation_s": dream_s},
                             message=f"real: {real_rollouts} rollouts x {max_steps} steps on {workers} workers"))  # fmt: skip
        spec = RealRolloutSpec(WorldModelFiles.read(vision, memory), max_steps)
        with make_executor("local", workers, spec) as executor:
            warm = [RealRollout(s, candidates[0], early_stop_patience=1) for s in range(workers)]
            list(executor.map_unordered(real_rollout_task, warm))
            t = time.perf_counter()
            list(executor.map_unordered(real_rollout_task, [RealRollout(s, candidates[s % population])
                                                              for s in range(real_rollouts)]))  # fmt: skip
            real_s = time.perf_counter() - t
    dream_rate, real_rate = population * rollouts / dream_s, real_rollouts / real_s
    result = {
        "bench/dream_generation_s": dream_s,
        "bench/dream_rollouts_per_s": dream_rate,
        "bench/real_rollouts_per_s": real_rate,
        "bench/real_seconds_per_rollout": real_s / real_rollouts,
        "bench/speedup": dream_rate / real_rate,
    }
    on_progress(Progress("bench", 2, 2, result))
    return result
