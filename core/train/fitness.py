"""The controller's fitness: mean return over rollouts, in the dream (:class:`DreamEvaluator`, every candidate x
rollout stepped as one :class:`BatchedDream` through M's reward and done heads, from real encoded starts) or in
CarRacing-v3 (:class:`RealEvaluator`, on an executor). Also the random choices a generation shares (common random
numbers: tracks, dream seeds, starts) and a benchmark of the two evaluators (``scripts/bench_controller.py``)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from gymnasium.utils import seeding
from torch import Tensor

from core.config import SHIPPED_HIDDEN_DIM, SHIPPED_Z_DIM
from core.data.datasets import LatentEpisodes
from core.data.seeds import MODEL_SELECTION, TRAINING
from core.envs.dream import BatchedDream
from core.errors import CheckpointError
from core.evaluate import RealRollout, RealRolloutSpec, real_rollout_task
from core.models.controller import ControllerConfig, batched_actions
from core.models.mdnrnn import MDNRNN
from core.parallel import Executor
from core.train.disagreement import EnsembleDisagreement

REAL_CHECK_SEED_START = MODEL_SELECTION.start
REAL_STEPS = "controller/real_steps"
"""Metric: real-env steps an evaluator's last call took (the real evaluator's; the dream's is 0)."""
"""Real checks drive on tracks REAL_CHECK_SEED_START.. (validation); real training rollouts stay below it."""


def dream_rollout_bytes(
    n_params: int, z_dim: int = SHIPPED_Z_DIM, hidden_dim: int = SHIPPED_HIDDEN_DIM, n_gaussians: int = 5
) -> int:
    """Estimated bytes per dream of :class:`DreamEvaluator`'s batch: its candidate's float32 weights, the LSTM
    state, observation, the step's mixture parameters and their temporaries (about 3 copies), in float32."""
    return 4 * (n_params + 3 * (4 * hidden_dim + 2 * z_dim + 3 * n_gaussians * z_dim + 8))


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


def dream_check_plan(seed: int, rollouts: int, n_starts: int) -> GenerationPlan:
    """The fixed plan of a run's dream checks (``train-controller --check-in dream``): the same dreams (seeds
    and starts) at every check, drawn from a stream no generation's plan uses."""
    rng = np.random.default_rng([seed, 2, 0])
    return GenerationPlan(
        track_seeds=np.zeros(rollouts, np.int64),
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
        speed: float32 (S,) the car's speed at each start (the HUD's, world units per second) for an M that reads
            the speed (``MDNRNNConfig.speed_input``), else None.
        yaw: float32 (S,) the car's yaw rate at each start (the HUD's, rad/s) for an M that reads it
            (``MDNRNNConfig.yaw_input``), else None.
    """

    z: Tensor
    h: Tensor
    c: Tensor
    episodes: np.ndarray
    steps: np.ndarray
    speed: Tensor | None = None
    yaw: Tensor | None = None

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
        rng = np.random.default_rng([seed, 1])
        episodes = rng.integers(0, latents.n_episodes, count)
        lengths = np.diff(latents.starts) - 1  # steps per episode; frames are steps + 1
        hi = np.minimum(step_max, lengths[episodes])
        t = rng.integers(np.minimum(step_min, hi), hi + 1)
        return cls.at(latents, memory, episodes, t)

    def for_memory(self, latents: LatentEpisodes, memory: MDNRNN) -> DreamStarts:
        """The same starts (the same episodes of ``latents``, which must be the file they were drawn from, and
        steps) with ``memory``'s LSTM state after each real prefix: an ensemble member's starts.

        Raises:
            CheckpointError: the latents' size differs from M's z_dim.
        """
        return self.at(latents, memory, self.episodes, self.steps)

    @classmethod
    @torch.no_grad()
    def at(cls, latents: LatentEpisodes, memory: MDNRNN, episodes: np.ndarray, t: np.ndarray) -> DreamStarts:
        """Starts at step ``t[i]`` of episode ``episodes[i]`` (int64 (S,) each; t within the episode), with M run
        over each real prefix.

        Raises:
            CheckpointError: the latents' size differs from M's z_dim, or M reads a car state they lack.
        """
        if latents.z_dim != memory.config.z_dim:
            raise CheckpointError(f"latent file has z_dim {latents.z_dim}, the memory model {memory.config.z_dim}")
        reads_speed = memory.config.speed_input
        if reads_speed and latents.speeds is None:
            raise CheckpointError("this MDN-RNN reads the car's speed and the latent file has none (encode again)")
        reads_yaw = memory.config.yaw_input
        if reads_yaw and latents.yaw_rates is None:
            raise CheckpointError(
                "this MDN-RNN reads the car's yaw rate and the latent file has none (scripts/add_yaw_rates.py)"
            )
        count, horizon = len(episodes), int(t.max())
        z0 = np.empty((count, latents.z_dim), np.float32)
        prefix_z = np.zeros((count, horizon, latents.z_dim), np.float32)
        prefix_a = np.zeros((count, horizon, 3), np.float32)
        prefix_s = np.zeros((count, horizon + 1), np.float32)
        prefix_yaw = np.zeros((count, horizon + 1), np.float32)
        for i, (e, ti) in enumerate(zip(episodes, t, strict=True)):
            ep = latents.episode(int(e))
            z0[i] = ep["mu"][ti]
            prefix_z[i, :ti] = ep["mu"][:ti]
            prefix_a[i, :ti] = ep["action"][:ti]
            if reads_speed:
                prefix_s[i, : ti + 1] = ep["speed"][: ti + 1]
            if reads_yaw:
                prefix_yaw[i, : ti + 1] = ep["yaw_rate"][: ti + 1]
        speed = torch.from_numpy(prefix_s) if reads_speed else None
        yaw = torch.from_numpy(prefix_yaw) if reads_yaw else None
        h, c = memory.state_after(
            torch.from_numpy(prefix_z), torch.from_numpy(prefix_a), torch.from_numpy(t.astype(np.int64)),
            None if speed is None else speed[:, :horizon], None if yaw is None else yaw[:, :horizon],
        )  # fmt: skip
        at = (torch.arange(count), torch.from_numpy(t.astype(np.int64)))
        start_speed = None if speed is None else speed[at]
        return cls(torch.from_numpy(z0), h[0], c[0], episodes, t, start_speed, None if yaw is None else yaw[at])


# -- fitness evaluators ------------------------------------------------------------------------------------------
class FitnessEvaluator(Protocol):
    """Returns of candidate controllers: the interface behind ``--evaluator dream|real``.

    An evaluator may also expose ``metrics: dict[str, float]``, namespaced metrics of its last call, which
    the stage reports with the generation's (the dream evaluator's ``controller/dream_diverged``, the real
    evaluator's ``controller/real_steps``).
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
    :class:`DreamEnv` per rollout with ``reset(seed=dream_seed, options={"z": z, "state": (h, c)})`` (and
    ``"speed"``: the start's HUD speed, for an M that reads the speed).

    With ``members`` (an ensemble of K = 1 + len(members) MDN-RNNs), rollout r is dreamt by member ``r mod K``
    (member 0: ``memory``), so every candidate's fitness averages over all of them and a controller cannot win by
    exploiting one model's errors (the ensembles of model-based RL, e.g. Chua et al., 2018, "PETS"; Kurutach et
    al., 2018, "ME-TRPO"). The controller always reads ``memory``'s h, run along on the member's z and actions
    (``BatchedDream``'s reader), as it does in reality. Without members the rollouts are those above, unchanged.

    After each call, ``metrics["controller/dream_diverged"]`` is the share of rollouts whose ``|z|`` exceeded
    ``z_norm_limit`` at some step: dreams of an unstable M running off the range of real latents, where its
    reward head means nothing.

    Args:
        memory: the MDN-RNN. controller_config: sizes of the candidates (hidden_dim 0: they see z alone).
        tau: temperature. max_steps: horizon. starts: real starting states (None: z ~ N(0, I), h = 0).
        z_norm_limit: ``|z|`` beyond which a dream counts as diverged (default ``2 (sqrt(z_dim) + 4)``, twice
            what N(0, I) latents stay below).
        members: further MDN-RNNs of ``memory``'s sizes, each with its own start states: the same episodes and
            steps as ``starts``, the LSTM state being that member's after the real prefix (None without starts).
        disagreement_penalty: lambda >= 0; > 0 (needs members) takes ``lambda * u_t`` off every live step's reward,
            u_t the members' disagreement about z_{t+1} (:class:`core.train.disagreement.EnsembleDisagreement`;
            MOPO, Yu et al., 2020, eq. 7); the returns are then those of the penalised reward, and
            ``metrics["controller/dream_disagreement"]`` is u's mean over live steps and
            ``metrics["controller/dream_return"]`` the mean return of M's reward alone over all the call's rollouts
            (what the dreams pay before the penalty: at lambda 100 a mean u of 0.05 takes 500 off 100 steps,
            so the fitness alone hides what the controllers earn).
        disagreement_free: u0 >= 0, the disagreement the penalty leaves free: it takes ``lambda * max(0, u_t - u0)``,
            so states as predictable as the data's usual ones cost nothing and the penalty ranks only the unusual
            ones. 0: MOPO's penalty as published.
        halt_disagreement: > 0 (needs members): a dream halts at the first step where u_t exceeds it and
            ``halt_penalty`` is taken off its return once (MOReL's pessimistic MDP: its unknown-state detector
            sends the rollout to an absorbing HALT state of reward -kappa; Kidambi et al., 2020, sec. 4);
            ``metrics["controller/dream_halted"]`` is the share of rollouts halted. 0: off.
        halt_penalty: kappa >= 0, in reward units (CarRacing's own leaving the playfield costs 100).

    Raises:
        ValueError: a member of other sizes than ``memory``, members' starts that do not match ``starts``, or a
            negative penalty or halt threshold (or a positive one without members).
    """

    def __init__(
        self, memory: MDNRNN, controller_config: ControllerConfig, tau: float, max_steps: int,
        starts: DreamStarts | None = None, z_norm_limit: float | None = None, bf16: bool = False,
        members: Sequence[tuple[MDNRNN, DreamStarts | None]] = (), disagreement_penalty: float = 0.0,
        disagreement_free: float = 0.0, halt_disagreement: float = 0.0, halt_penalty: float = 100.0,
    ) -> None:  # fmt: skip
        self.memory = memory.eval()
        self.bf16 = bf16
        self.config = controller_config
        self.tau, self.max_steps, self.starts = tau, max_steps, starts
        default_limit = 2.0 * (math.sqrt(memory.config.z_dim) + 4.0)
        self.z_norm_limit = z_norm_limit if z_norm_limit is not None else default_limit
        sizes = (memory.config.z_dim, memory.config.hidden_dim)
        for i, (member, member_starts) in enumerate(members, start=1):
            if (member.config.z_dim, member.config.hidden_dim) != sizes:
                raise ValueError(f"ensemble member {i} has other sizes than the controller's M")
            same = (member_starts is None) == (starts is None)
            if same and starts is not None and member_starts is not None:
                same = np.array_equal(member_starts.episodes, starts.episodes) and np.array_equal(
                    member_starts.steps, starts.steps
                )
            if not same:
                raise ValueError(f"ensemble member {i}'s starts are not the same episodes and steps as M's")
        self.members: list[tuple[MDNRNN, DreamStarts | None]] = [(memory, starts)] + [(m.eval(), s) for m, s in members]
        if disagreement_penalty < 0 or (disagreement_penalty > 0 and len(self.members) < 2):
            raise ValueError("disagreement_penalty must be >= 0, and > 0 needs ensemble members")
        if halt_disagreement < 0 or halt_penalty < 0 or (halt_disagreement > 0 and len(self.members) < 2):
            raise ValueError("halt_disagreement and halt_penalty must be >= 0, and a halt needs ensemble members")
        if disagreement_free < 0:
            raise ValueError(f"disagreement_free must be >= 0, got {disagreement_free}")
        self.penalty, self.free = disagreement_penalty, disagreement_free
        self.halt, self.halt_penalty = halt_disagreement, halt_penalty
        self.metrics: dict[str, float] = {}

    @torch.no_grad()
    def rollout_returns(
        self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event | None = None
    ) -> np.ndarray | None:
        p, r = len(candidates), len(plan.dream_seeds)
        weights, biases = _split_params(candidates, self.config.input_dim)
        weights, biases = weights.repeat_interleave(r, 0), biases.repeat_interleave(r, 0)
        seeds = np.tile([dream_stream_seed(s) for s in plan.dream_seeds], p)
        start_idx = torch.from_numpy(np.tile(plan.starts, p))
        member_of = np.tile(np.arange(r) % len(self.members), p)
        groups: list[tuple[Tensor | slice, BatchedDream, EnsembleDisagreement | None]] = []
        obs = torch.empty(p * r, self.memory.config.z_dim + self.memory.config.hidden_dim)
        for k, (member, member_starts) in enumerate(self.members):
            picked = np.flatnonzero(member_of == k)
            if len(picked) == 0:
                continue
            rows = slice(None) if len(picked) == p * r else torch.from_numpy(picked)
            reader = None if k == 0 else self.memory
            dream = BatchedDream(member, len(picked), self.tau, self.max_steps, bf16=self.bf16, reader=reader)
            if member_starts is None or self.starts is None:
                obs[rows] = dream.reset(seeds[picked])
            else:
                idx = start_idx[picked]
                state = (member_starts.h[idx].unsqueeze(0), member_starts.c[idx].unsqueeze(0))
                reader_state = (self.starts.h[idx].unsqueeze(0), self.starts.c[idx].unsqueeze(0))
                obs[rows] = dream.reset(
                    seeds[picked], z=self.starts.z[idx], state=state, reader_state=reader_state,
                    speed=None if member_starts.speed is None else member_starts.speed[idx],
                    yaw=None if member_starts.yaw is None else member_starts.yaw[idx],
                )  # fmt: skip
            groups.append((rows, dream, self._disagreement(picked, start_idx)))
        z_dim = self.memory.config.z_dim
        total = torch.zeros(p * r, dtype=torch.float64)
        earned = torch.zeros(p * r, dtype=torch.float64)  # M's reward alone, before any penalty
        diverged = torch.zeros(p * r, dtype=torch.bool)
        halted = torch.zeros(p * r, dtype=torch.bool)
        spread_sum, live_steps = 0.0, 0
        for _ in range(self.max_steps):
            if should_stop is not None and should_stop.is_set():
                return None
            seen = obs if self.config.hidden_dim > 0 else obs[:, :z_dim]
            actions = batched_actions(weights, biases, seen)
            all_done = True
            for rows, dream, critic in groups:
                if critic is not None:  # MOPO's penalised reward (Yu et al., 2020, eq. 7), on z_t, a_t before the step
                    live = ~dream.done
                    spread = critic.step(
                        dream.z,
                        actions[rows],
                        dream.speed if dream.speed_input else None,
                        live,
                        dream.yaw if dream.yaw_input else None,
                    )
                    total[rows] -= self.penalty * (spread - self.free).clamp(min=0.0).double()
                    spread_sum, live_steps = spread_sum + float(spread.sum()), live_steps + int(live.sum())
                    if self.halt > 0:  # MOReL's HALT: the rollout ends here, kappa off its return once
                        halt = live & (spread > self.halt)
                        total[rows] -= self.halt_penalty * halt.double()
                        halted[rows] |= halt
                        dream.done |= halt
                obs[rows], reward, _, _ = dream.step(actions[rows])
                total[rows] += reward.double()
                earned[rows] += reward.double()
                diverged[rows] |= dream.z.norm(dim=1) > self.z_norm_limit
                all_done = all_done and bool(dream.done.all())
            if all_done:
                break
        self.metrics = {"controller/dream_diverged": float(diverged.float().mean())}
        if self.penalty > 0 or self.halt > 0:
            self.metrics["controller/dream_disagreement"] = spread_sum / max(live_steps, 1)
            self.metrics["controller/dream_return"] = float(earned.mean())
        if self.halt > 0:
            self.metrics["controller/dream_halted"] = float(halted.float().mean())
        return total.view(p, r).numpy()

    def _disagreement(self, picked: np.ndarray, start_idx: Tensor) -> EnsembleDisagreement | None:
        """With a penalty or a halt: every member's LSTM state at the starts of rows ``picked`` (zeros without
        starts)."""
        if self.penalty <= 0 and self.halt <= 0:
            return None
        states = []
        idx = start_idx[picked]
        for _, member_starts in self.members:
            if member_starts is None or self.starts is None:
                zeros = torch.zeros(1, len(picked), self.memory.config.hidden_dim)
                states.append((zeros, zeros.clone()))
            else:
                states.append((member_starts.h[idx].unsqueeze(0), member_starts.c[idx].unsqueeze(0)))
        return EnsembleDisagreement([m for m, _ in self.members], states)


class RealEvaluator:
    """Candidates x rollouts as real CarRacing-v3 episodes on an executor whose payload is a
    :class:`RealRolloutSpec` (V and M as bytes); every candidate's r-th rollout drives ``plan.track_seeds[r]``.

    Args:
        executor: local pool or Ray. early_stop_patience: see ``ControllerTrainConfig.early_stop_patience``.
    """

    def __init__(self, executor: Executor[RealRolloutSpec], early_stop_patience: int = 0) -> None:
        self.executor = executor
        self.early_stop_patience = early_stop_patience
        self.metrics: dict[str, float] = {}

    def rollout_returns(
        self, candidates: np.ndarray, plan: GenerationPlan, should_stop: threading.Event | None = None
    ) -> np.ndarray | None:
        """See :class:`FitnessEvaluator`; afterwards ``metrics[REAL_STEPS]`` is the real-env steps the call took."""
        p, r = len(candidates), len(plan.track_seeds)
        tasks = [RealRollout(int(s), cand, self.early_stop_patience) for cand in candidates for s in plan.track_seeds]
        returns = np.full(p * r, np.nan)
        done = steps = 0
        results = self.executor.map_unordered(real_rollout_task, tasks, should_stop=should_stop, abandon_on_stop=True)
        for i, (ret, n) in results:
            returns[i] = ret
            done += 1
            steps += n
        self.metrics = {REAL_STEPS: float(steps)}
        return returns.reshape(p, r) if done == len(tasks) else None


def real_returns(
    executor: Executor[RealRolloutSpec],
    params: np.ndarray,
    seeds: list[int],
    should_stop: threading.Event | None,
) -> tuple[list[float], int] | None:
    """Returns of one controller (flat params) on real tracks ``seeds``, no early stop, and the real-env steps
    they took; None when stopped (episodes still running are abandoned: the caller terminates the executor)."""
    tasks = [RealRollout(s, params) for s in seeds]
    out = dict(executor.map_unordered(real_rollout_task, tasks, should_stop=should_stop, abandon_on_stop=True))
    if len(out) < len(seeds):
        return None
    return [out[i][0] for i in range(len(seeds))], sum(out[i][1] for i in range(len(seeds)))
