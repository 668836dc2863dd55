"""Env API: both the real env through the [z, h] wrapper and the dream pass gymnasium's check_env."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import core  # noqa: F401  (registers DreamCarRacing-v0)
from core.envs.car_racing import make_real_env
from core.envs.dream import BatchedDream, DreamEnv
from core.envs.world_model import WorldModel, WorldModelObservation
from core.models.mdn import sample_mdn_with_noise


@pytest.fixture(scope="module")
def wm(tiny_world_model: dict[str, Path]) -> WorldModel:
    return WorldModel.load(tiny_world_model["vision"], tiny_world_model["memory"], tiny_world_model["controller"])


def test_dream_env_passes_check_env(wm: WorldModel) -> None:
    env = DreamEnv(wm, render_mode="rgb_array")
    check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (288,) and obs.dtype == np.float32
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_real_env_through_world_model_wrapper_passes_check_env(wm: WorldModel) -> None:
    env = WorldModelObservation(make_real_env(), wm)
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == (288,) and info["frame"].shape == (96, 96, 3)
    assert np.allclose(obs[32:], 0)  # h_0 = 0
    obs2, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert not np.allclose(obs2[32:], 0)  # h moved
    z_direct = wm.encode(info["frame"])[0][0].numpy()
    np.testing.assert_allclose(obs2[:32], z_direct, atol=1e-5)
    env.close()


def test_registered_dream_env(tiny_world_model: dict[str, Path]) -> None:
    env = gym.make("DreamCarRacing-v0", vision=tiny_world_model["vision"], memory=tiny_world_model["memory"], obs="z")
    obs, _ = env.reset(seed=1)
    assert obs.shape == (32,)
    env.close()


def test_dream_is_seeded_and_tau_zero_is_deterministic(wm: WorldModel) -> None:
    env = DreamEnv(wm, tau=1.0)
    a = np.array([0.1, 0.5, 0.0], np.float32)

    def run(seed: int, tau: float) -> np.ndarray:
        env.tau = tau
        obs, _ = env.reset(seed=seed, options={"z": np.zeros(32, np.float32)})
        return np.stack([env.step(a)[0] for _ in range(40)])

    np.testing.assert_array_equal(run(5, 1.0), run(5, 1.0))
    assert not np.allclose(run(5, 1.0), run(6, 1.0))
    np.testing.assert_array_equal(run(5, 0.0), run(6, 0.0))


def test_dream_starts_from_real_frame(wm: WorldModel) -> None:
    real = make_real_env()
    frame, _ = real.reset(seed=0)
    env = DreamEnv(wm)
    obs, _ = env.reset(seed=0, options={"frame": frame})
    np.testing.assert_allclose(obs[:32], wm.encode(frame)[0][0].numpy(), atol=1e-6)
    real.close()


def test_batched_dream_matches_single_rollouts(wm: WorldModel) -> None:
    seeds = [11, 12, 13, 14]
    torch.manual_seed(0)
    actions = torch.rand(60, 4, 3) * torch.tensor([2.0, 1.0, 1.0]) - torch.tensor([1.0, 0.0, 0.0])
    batched = BatchedDream(wm.require_memory(), 4, tau=1.2, max_steps=60)
    batched.reset(seeds)
    returns_batched = torch.zeros(4)
    for t in range(60):
        _, r, _, _ = batched.step(actions[t])
        returns_batched += r
    for i, s in enumerate(seeds):
        single = BatchedDream(wm.require_memory(), 1, tau=1.2, max_steps=60)
        single.reset([s])
        total = 0.0
        for t in range(60):
            total += float(single.step(actions[t, i : i + 1])[1][0])
        assert total == pytest.approx(float(returns_batched[i]), abs=1e-3)


def one_batched_step(m: torch.nn.Module, tau: float, joint: bool = False) -> tuple[BatchedDream, torch.Tensor, tuple]:
    """One step of an 8-rollout batched dream, and the model's own step and sample with the same noise:
    ``(dream, expected z, (model output, standard normal noise, the dream's reward))``."""
    dream = BatchedDream(m, 8, tau=tau)  # type: ignore[arg-type]
    dream.reset(list(range(8)), z=torch.randn(8, 32, generator=torch.Generator().manual_seed(0)))
    z0, a = dream.z.clone(), torch.rand(8, 3)
    dream._refill()
    u_and_eps = dream._noise_chunk[0].clone()
    dream._chunk_pos = 0
    with torch.no_grad():
        out, _ = m.step(z0, a, m.initial_state(8))
    normal = u_and_eps.clone()
    normal[..., 0] = torch.erfinv(2 * u_and_eps[..., 0] - 1) * 2**0.5
    expected = sample_mdn_with_noise(out.log_pi, out.mu, out.log_sigma, tau, normal, joint=joint)
    reward = dream.step(a)[1]
    return dream, expected, (out, normal, reward)


@pytest.mark.parametrize("tau", [0.0, 0.7, 1.3])
def test_batched_dream_step_samples_as_the_model_does(wm: WorldModel, tau: float) -> None:
    dream, expected, (out, _, reward) = one_batched_step(wm.require_memory(), tau)
    torch.testing.assert_close(dream.z, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(reward, out.reward, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tau", [0.0, 0.9])
def test_batched_dream_samples_a_joint_mixture_as_the_model_does(tau: float) -> None:
    from core.models.mdnrnn import MDNRNN, MDNRNNConfig

    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_dim=32, hidden_dim=24, n_gaussians=5, joint=True)).eval()
    with torch.no_grad():
        m.head.weight.mul_(5.0)  # spread the logits so that the component draw matters
    dream, expected, (out, normal, _) = one_batched_step(m, tau, joint=True)
    torch.testing.assert_close(dream.z, expected, atol=1e-4, rtol=1e-4)
    per_dim = sample_mdn_with_noise(out.log_pi, out.mu, out.log_sigma, tau, normal)
    if tau > 0:
        assert not torch.allclose(dream.z, per_dim, atol=1e-3)  # the joint draw is not the per-dimension one


def test_bf16_dream_step_is_close_to_float32(wm: WorldModel) -> None:
    m = wm.require_memory()
    z0 = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    a = torch.rand(64, 3)
    steps = {}
    for bf16 in (False, True):
        dream = BatchedDream(m, 64, tau=0.0, bf16=bf16)
        dream.reset(list(range(64)), z=z0)
        _, reward, _, _ = dream.step(a)
        steps[bf16] = (dream.z.clone(), dream.h.clone(), reward)
    (z32, h32, r32), (z16, h16, r16) = steps[False], steps[True]
    assert not torch.equal(z32, z16)  # really computed in another precision
    torch.testing.assert_close(h16, h32, atol=2e-2, rtol=0)
    # at tau = 0 a near-tie between two components' logits can flip under rounding: allow a few picks to differ
    close = (z16 - z32).abs() < 5e-2
    assert close.float().mean() > 0.99 and (z16 - z32).abs().mean() < 1e-2
    torch.testing.assert_close(r16, r32, atol=5e-2, rtol=0)


def test_the_wrapper_and_the_collection_policy_track_z_and_h_alike(tiny_world_model: dict[str, Path]) -> None:
    """Both track reality through one RealTracker: a controller fed the wrapper's [z, h] and the collection policy
    (no noise) take the same actions on the same track, and their h stays equal step by step."""
    from core.policies_wm import ControllerPolicy

    wm = WorldModel.load(tiny_world_model["vision"], tiny_world_model["memory"], tiny_world_model["controller"])
    assert wm.controller is not None
    wrapped = WorldModelObservation(make_real_env(), wm)
    policy = ControllerPolicy(wm, noise_std=0.0, excursion_prob=0.0)
    plain = make_real_env()
    obs, _ = wrapped.reset(seed=1_000_321)
    frame, _ = plain.reset(seed=1_000_321)
    policy.reset(seed=0)
    moved = 0.0
    try:
        for _ in range(40):
            with torch.no_grad():
                a_wrapped = wm.controller(torch.from_numpy(obs)).numpy()
            a_policy = policy.act(frame)
            np.testing.assert_allclose(a_policy, np.clip(a_wrapped, [-1, 0, 0], [1, 1, 1]), atol=1e-5)
            obs, *_ = wrapped.step(a_policy)  # both have now stepped M with (z_t, a_t)
            frame, *_ = plain.step(a_policy)
            assert policy.tracker.state is not None and wrapped.state is not None
            torch.testing.assert_close(policy.tracker.state[0], wrapped.state[0], atol=1e-5, rtol=1e-5)
            moved += float(np.abs(wrapped.state[0]).sum())
    finally:
        wrapped.close()
        plain.close()
    assert moved > 0.0  # h really moves
