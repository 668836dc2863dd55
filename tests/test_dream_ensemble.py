"""Dreaming in an ensemble of MDN-RNNs (``train-controller --dream-ensemble``): which model dreams which rollout,
the controller reading the deployed M's h along another model's dream, and the stage's checks of its inputs.

Tiny untrained models (z 8, h 16), 30-step dreams.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.checkpoint import read_checkpoint, save_checkpoint
from core.data.datasets import LatentEpisodes
from core.envs.dream import BatchedDream
from core.errors import CheckpointError, ConfigError
from core.models.controller import ControllerConfig
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.vae import ConvVAE, VAEConfig
from core.train.cmaes import CMAES
from core.train.controller import ControllerTrainConfig, train_controller
from core.train.fitness import DreamEvaluator, DreamStarts, generation_plan
from tests.conftest import random_latents

Z, H = 8, 16


def _memory(seed: int, **config: object) -> MDNRNN:
    torch.manual_seed(seed)
    m = MDNRNN(MDNRNNConfig(z_dim=Z, hidden_dim=H, n_gaussians=2, **config))  # type: ignore[arg-type]
    with torch.no_grad():
        m.head.bias[-1] = -20.0  # the done head never fires: every dream runs its whole horizon
    return m.eval()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny V, two different Ms and a latent file of 3 random 40-step episodes."""
    d = tmp_path_factory.mktemp("ensemble")
    vision, memory, other = d / "vision.safetensors", d / "memory.safetensors", d / "other.safetensors"
    save_checkpoint(vision, ConvVAE(VAEConfig(z_dim=Z)), kind="conv_vae", config=VAEConfig(z_dim=Z))
    m0, m1 = _memory(0), _memory(1)
    save_checkpoint(memory, m0, kind="mdnrnn", config=m0.config)
    save_checkpoint(other, m1, kind="mdnrnn", config=m1.config)
    latents = random_latents(d / "latents.npz", vision, Z)
    return SimpleNamespace(vision=vision, memory=memory, other=other, m0=m0, m1=m1, latents=latents)


def _starts(world: SimpleNamespace, memory: MDNRNN) -> DreamStarts:
    return DreamStarts.from_latents(LatentEpisodes.load(world.latents), memory, 16, 0, 30, seed=0)


def _candidates() -> np.ndarray:
    return CMAES(np.zeros(3 * ControllerConfig(Z, H).input_dim + 3), 0.5, 6, seed=3).ask()


def test_an_ensemble_of_m_with_itself_dreams_what_m_alone_dreams(world: SimpleNamespace) -> None:
    starts = _starts(world, world.m0)
    plan = generation_plan(0, 0, rollouts=5, n_starts=len(starts))
    alone = DreamEvaluator(world.m0, ControllerConfig(Z, H), 1.0, 30, starts).rollout_returns(_candidates(), plan)
    twice = DreamEvaluator(world.m0, ControllerConfig(Z, H), 1.0, 30, starts, members=[(world.m0, starts)])
    returns = twice.rollout_returns(_candidates(), plan)
    assert alone is not None and returns is not None
    np.testing.assert_allclose(returns, alone, rtol=1e-5, atol=1e-4)


def test_rollout_r_is_dreamt_by_member_r_mod_k(world: SimpleNamespace) -> None:
    """A member that is M with every reward raised by 1 earns exactly 30 more on the rollouts it dreams (its z and h
    are M's), and only on those: rollouts 1 and 4 of 6 with K = 3."""
    starts = _starts(world, world.m0)
    richer = copy.deepcopy(world.m0)
    with torch.no_grad():
        richer.head.bias[-2] += 1.0
    plan = generation_plan(0, 1, rollouts=6, n_starts=len(starts))
    base = DreamEvaluator(world.m0, ControllerConfig(Z, H), 1.0, 30, starts).rollout_returns(_candidates(), plan)
    members = [(richer, starts), (world.m0, starts)]
    mixed = DreamEvaluator(world.m0, ControllerConfig(Z, H), 1.0, 30, starts, members=members)
    returns = mixed.rollout_returns(_candidates(), plan)
    assert base is not None and returns is not None
    expected = base + np.where(np.arange(6) % 3 == 1, 30.0, 0.0)
    np.testing.assert_allclose(returns, expected, rtol=1e-5, atol=1e-3)


def test_the_controller_reads_the_deployed_ms_h_along_a_members_dream(world: SimpleNamespace) -> None:
    n, steps = 4, 12
    dream = BatchedDream(world.m1, n, tau=1.0, max_steps=50, reader=world.m0)
    dream.reset([1, 2, 3, 4])
    rng = np.random.default_rng(5)
    zs, actions = [], []
    for _ in range(steps):
        zs.append(dream.z.clone())
        a = torch.from_numpy(rng.uniform([-1, 0, 0], [1, 1, 1], (n, 3)).astype(np.float32))
        actions.append(a)
        obs, *_ = dream.step(a)
    z_seq, a_seq = torch.stack(zs, dim=1), torch.stack(actions, dim=1)
    h0, _ = world.m0.state_after(z_seq, a_seq, torch.full((n,), steps))
    h1, _ = world.m1.state_after(z_seq, a_seq, torch.full((n,), steps))
    torch.testing.assert_close(obs[:, Z:], h0[0], atol=1e-5, rtol=1e-5)  # the deployed M's h ...
    torch.testing.assert_close(dream.h, h1[0], atol=1e-5, rtol=1e-5)  # ... while the member dreams with its own
    assert not torch.allclose(h0[0], h1[0], atol=1e-3)


def test_a_reader_of_other_sizes_is_refused(world: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="reader"):
        BatchedDream(world.m0, 2, reader=MDNRNN(MDNRNNConfig(z_dim=Z, hidden_dim=8, n_gaussians=2)))


def _config(world: SimpleNamespace, out: Path, **kw: object) -> ControllerTrainConfig:
    base = dict(vision=world.vision, memory=world.memory, latents=world.latents, out=out, population=6,
                rollouts=4, generations=3, max_steps=30, real_check_every=0, threads=1)  # fmt: skip
    return ControllerTrainConfig(**{**base, **kw})


def test_a_dream_ensemble_run_trains_and_records_its_models(world: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "c.safetensors"
    alone = train_controller(_config(world, tmp_path / "alone.safetensors"))
    result = train_controller(_config(world, out, dream_ensemble=(world.other,)))
    assert not result.cancelled and len(result.history) == 3
    assert read_checkpoint(out).extra["dream_ensemble"] == [str(world.other)]
    # the same CMA-ES seed and plans, another dream for half of the rollouts: another fitness
    assert result.history[0][1]["controller/fitness_mean"] != alone.history[0][1]["controller/fitness_mean"]


def test_dream_ensemble_inputs_are_checked(world: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dream_ensemble needs evaluator dream"):
        _config(world, tmp_path / "c.safetensors", evaluator="real", dream_ensemble=(world.other,))
    with pytest.raises(CheckpointError):
        train_controller(_config(world, tmp_path / "c.safetensors", dream_ensemble=(tmp_path / "missing.safetensors",)))
    small = tmp_path / "small.safetensors"
    m = MDNRNN(MDNRNNConfig(z_dim=Z, hidden_dim=8, n_gaussians=2))
    save_checkpoint(small, m, kind="mdnrnn", config=m.config)
    with pytest.raises(ConfigError, match="--dream-ensemble .* has z_dim, hidden_dim"):
        train_controller(_config(world, tmp_path / "c.safetensors", dream_ensemble=(small,)))
    starts = _starts(world, world.m0)
    other_starts = DreamStarts.from_latents(LatentEpisodes.load(world.latents), world.m1, 16, 0, 30, seed=9)
    with pytest.raises(ValueError, match="same episodes and steps"):
        DreamEvaluator(world.m0, ControllerConfig(Z, H), 1.0, 30, starts, members=[(world.m1, other_starts)])
