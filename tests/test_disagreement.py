"""The ensemble's disagreement penalty on the dream's reward (``train-controller --disagreement-penalty``, MOPO's
eq. 7): its value on members whose predictions differ by a known amount, and its exact effect on the returns.

Tiny untrained models (z 8, h 16), 30-step dreams.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import save_checkpoint
from core.data.datasets import LatentEpisodes
from core.errors import ConfigError
from core.models.controller import ControllerConfig
from core.models.mdnrnn import MDNRNN
from core.models.vae import ConvVAE, VAEConfig
from core.train.controller import ControllerTrainConfig
from core.train.disagreement import EnsembleDisagreement
from core.train.fitness import DreamEvaluator, DreamStarts, generation_plan
from tests.conftest import random_latents
from tests.test_dream_ensemble import H, Z, _candidates, _memory


@pytest.fixture(scope="module")
def latents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A latent file of 3 random 40-step episodes, encoded by a tiny V."""
    d = tmp_path_factory.mktemp("disagreement")
    save_checkpoint(d / "vision.safetensors", ConvVAE(VAEConfig(z_dim=Z)), kind="conv_vae", config=VAEConfig(z_dim=Z))
    return random_latents(d / "latents.npz", d / "vision.safetensors", Z)


def _shifted(memory: MDNRNN, delta: float) -> MDNRNN:
    """``memory`` with every component's mean moved by ``delta``: its predicted z_{t+1} mean moves by delta."""
    other = copy.deepcopy(memory)
    n, d, k = other.n_logits, other.config.z_dim, other.config.n_gaussians
    with torch.no_grad():
        other.head.bias[n : n + d * k] += delta
    return other


def _zeros(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, n, H), torch.zeros(1, n, H)


def test_disagreement_is_zero_for_equal_members_and_half_the_shift_for_two() -> None:
    m = _memory(0)
    z, a = torch.randn(5, Z), torch.rand(5, 3)
    same = EnsembleDisagreement([m, copy.deepcopy(m)], [_zeros(5), _zeros(5)])
    assert torch.allclose(same.step(z, a), torch.zeros(5), atol=1e-6)
    apart = EnsembleDisagreement([m, _shifted(m, 0.4)], [_zeros(5), _zeros(5)])
    for _ in range(3):  # the same LSTMs, so the gap stays 0.4 step after step: std of two values 0.4 apart
        torch.testing.assert_close(apart.step(z, a), torch.full((5,), 0.2), atol=1e-5, rtol=0)
    live = torch.tensor([True, False, True, True, False])
    assert apart.step(z, a, live=live)[~live].abs().sum() == 0  # finished rows get 0


def test_disagreement_inputs_are_checked() -> None:
    m = _memory(0)
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleDisagreement([m], [_zeros(2)])
    with pytest.raises(ValueError, match="2 members but 1 start states"):
        EnsembleDisagreement([m, m], [_zeros(2)])


def test_the_penalty_takes_lambda_times_the_disagreement_off_every_step(latents: Path) -> None:
    """Members 0.4 apart disagree by 0.2 at every step: lambda 2 over 30 steps takes exactly 12 off every return;
    equal members lose nothing."""
    m0 = _memory(0)
    starts = DreamStarts.from_latents(LatentEpisodes.load(latents), m0, 16, 0, 30, seed=0)
    plan = generation_plan(0, 0, rollouts=4, n_starts=len(starts))
    members = [(_shifted(m0, 0.4), starts)]
    plain = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, members=members)
    penalised = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, members=members, disagreement_penalty=2.0)
    base, pen = plain.rollout_returns(_candidates(), plan), penalised.rollout_returns(_candidates(), plan)
    assert base is not None and pen is not None
    np.testing.assert_allclose(base - pen, 12.0, atol=1e-3)
    assert penalised.metrics["controller/dream_disagreement"] == pytest.approx(0.2, abs=1e-5)
    assert penalised.metrics["controller/dream_return"] == pytest.approx(float(base.mean()), abs=1e-4)  # no penalty
    assert "controller/dream_return" not in plain.metrics  # without a penalty the fitness is the return
    same = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, members=[(m0, starts)], disagreement_penalty=2.0)
    alone = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts).rollout_returns(_candidates(), plan)
    together = same.rollout_returns(_candidates(), plan)
    assert alone is not None and together is not None
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="needs ensemble members"):
        DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, disagreement_penalty=1.0)
    # a free allowance u0 takes lambda * (0.2 - u0) per step: 2 * 0.15 * 30 = 9 with u0 0.05; nothing with u0 0.25
    for free, cost in ((0.05, 9.0), (0.25, 0.0)):
        allowed = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, members=members,
                                 disagreement_penalty=2.0, disagreement_free=free).rollout_returns(_candidates(), plan)  # fmt: skip
        assert allowed is not None
        np.testing.assert_allclose(base - allowed, cost, atol=1e-3)


def test_the_penalty_needs_an_ensemble_in_the_stage_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="disagreement_penalty"):
        ControllerTrainConfig(disagreement_penalty=1.0)
    with pytest.raises(ConfigError, match="disagreement_penalty"):
        ControllerTrainConfig(dream_ensemble=(tmp_path / "m.safetensors",), disagreement_penalty=-1.0)


def test_a_dream_halts_where_the_members_part(latents: Path) -> None:
    """MOReL's HALT: members 0.4 apart disagree by 0.2 at every step, so a threshold below it ends every dream at
    its first step with exactly -kappa; one above it changes nothing."""
    m0 = _memory(0)
    starts = DreamStarts.from_latents(LatentEpisodes.load(latents), m0, 16, 0, 30, seed=0)
    plan = generation_plan(0, 0, rollouts=4, n_starts=len(starts))
    members = [(_shifted(m0, 0.4), starts)]

    def returns(**halt: float) -> tuple[np.ndarray, dict[str, float]]:
        evaluator = DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, members=members, **halt)
        out = evaluator.rollout_returns(_candidates(), plan)
        assert out is not None
        return out, evaluator.metrics

    plain, _ = returns()
    halted, metrics = returns(halt_disagreement=0.1, halt_penalty=50.0)
    np.testing.assert_allclose(halted, -50.0)
    assert metrics["controller/dream_halted"] == 1.0 and metrics["controller/dream_disagreement"] == pytest.approx(0.2)
    assert metrics["controller/dream_return"] == 0.0  # halted before the first step's reward
    kept, metrics = returns(halt_disagreement=0.3, halt_penalty=50.0)
    np.testing.assert_allclose(kept, plain, rtol=1e-5, atol=1e-4)
    assert metrics["controller/dream_halted"] == 0.0
    with pytest.raises(ValueError, match="a halt needs ensemble members"):
        DreamEvaluator(m0, ControllerConfig(Z, H), 1.0, 30, starts, halt_disagreement=0.1)
    with pytest.raises(ConfigError, match="halt_disagreement"):
        ControllerTrainConfig(halt_disagreement=0.1)
    with pytest.raises(ConfigError, match="disagreement_free"):
        ControllerTrainConfig(disagreement_free=-0.1)
    with pytest.raises(ConfigError, match="halt_penalty"):
        ControllerTrainConfig(halt_penalty=-1.0)
