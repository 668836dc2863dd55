"""The Markov speed model: the speed stepped from the present step alone, priced step by step, and fitted over whole
windows (``train-memory --speed-model markov``, ``--speed-rollout-weight``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.config import MemoryTrainConfig
from core.errors import ConfigError
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.speed import MarkovSpeed
from tests.conftest import fit_mdnrnn


def _pulse_batch(seed: int, batch: int = 64, steps: int = 20) -> dict[str, torch.Tensor]:
    """Frames that say nothing of the speed and a car with a brake: speed_{t+1} = max(0, 0.97 speed_t + 4 gas_t -
    12 brake_t) from a speed drawn in [0, 80), gas (70% of steps) and brake (20%) drawn afresh at every step."""
    g = torch.Generator().manual_seed(seed)
    gas = torch.rand(batch, steps, generator=g) * (torch.rand(batch, steps, generator=g) < 0.7)
    brake = torch.rand(batch, steps, generator=g) * (torch.rand(batch, steps, generator=g) < 0.2)
    action = torch.stack([torch.zeros(batch, steps), gas, brake], dim=-1)
    speed = torch.zeros(batch, steps + 1)
    speed[:, 0] = torch.rand(batch, generator=g) * 80
    for t in range(steps):
        speed[:, t + 1] = (0.97 * speed[:, t] + 4.0 * gas[:, t] - 12.0 * brake[:, t]).clamp(min=0.0)
    z = torch.randn(batch, steps + 1, 2, generator=g)
    zeros = torch.zeros(batch, steps)
    return {"z": z, "action": action, "reward": zeros, "done": zeros, "speed": speed[:, 1:], "speed_in": speed[:, :-1]}


def test_a_markov_speed_model_prices_a_pulsed_pedal_step_by_step(one_torch_thread: None) -> None:
    """The Markov speed model reads only the present (z_t, a_t, s_t): two dreams from other LSTM states run the same
    speeds under the same pedal, a pattern of alternating gas and brake costs what its steps cost on the car that
    made the data, and the dream's running speed is the head stepped by hand."""
    from core.envs.dream import BatchedDream

    with pytest.raises(ConfigError, match="needs speed_input"):
        MDNRNNConfig(speed_weight=1.0, speed_model="markov")
    with pytest.raises(ConfigError, match="speed_model must be"):
        MDNRNNConfig(speed_weight=1.0, speed_input=True, speed_model="h")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs --speed-input"):
        MemoryTrainConfig(speed_weight=1.0, speed_model="markov")
    torch.manual_seed(0)
    cfg = MDNRNNConfig(z_dim=2, hidden_dim=16, n_gaussians=2, speed_weight=10.0, speed_input=True, speed_model="markov")
    m = MDNRNN(cfg)
    parts = fit_mdnrnn(m, _pulse_batch, 600, 3e-3)
    assert parts["speed_mse"] < 1e-3  # 3 units/s per step
    with pytest.raises(ValueError, match="give z_t and a_t"):
        m.speed(torch.zeros(1, 16), torch.zeros(1), torch.zeros(1, 3))
    pattern = [(1.0, 0.0), (0.0, 0.3)] * 20  # full gas, then 0.3 of the brake, alternating
    car = [60.0]
    for gas, brake in pattern:
        car.append(max(0.0, 0.97 * car[-1] + 4.0 * gas - 12.0 * brake))
    dream = BatchedDream(m, 2, tau=0.0, max_steps=len(pattern))
    dream.reset([1, 2], z=torch.zeros(2), speed=60.0)
    read, zs = [], []
    for gas, brake in pattern:
        zs.append(dream.z[:1].clone())
        dream.z[1] = dream.z[0]  # the same frame in both, whatever their LSTMs dream next
        dream.h[1] += torch.randn(16)  # and another LSTM state at every step
        dream.c[1] += torch.randn(16)
        dream.step(torch.tensor([[0.0, gas, brake]]).expand(2, 3))
        assert float(dream.speed[0]) == pytest.approx(float(dream.speed[1]), abs=1e-4)
        read.append(float(dream.speed[0]))
    assert car[-1] < 0.5 * car[0] and read[-1] == pytest.approx(car[-1], abs=4.0)  # the pulses slow it, as there
    with torch.no_grad():  # by hand: s_{t+1} = s_t + f(z_t, a_t, s_t), whatever h is
        s = torch.tensor([60.0])
        for (gas, brake), z in zip(pattern[:5], zs, strict=False):
            s = m.speed(torch.randn(1, 16), s, torch.tensor([[0.0, gas, brake]]), z)
        assert float(s[0]) == pytest.approx(read[4], abs=1e-4)


def _noisy_pulse_batch(seed: int, batch: int = 64, steps: int = 20) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`_pulse_batch` with the speeds read through noise (std 4 units/s, as a HUD reading is noisy); also
    the true speeds s_0..s_T (batch, steps + 1)."""
    b = _pulse_batch(seed, batch, steps)
    true = torch.cat([b["speed_in"][:, :1], b["speed"]], dim=1)
    read = (true + 4.0 * torch.randn(true.shape, generator=torch.Generator().manual_seed(seed + 7))).clamp(min=0.0)
    return {**b, "speed_in": read[:, :-1], "speed": read[:, 1:]}, true


def test_the_speed_rollout_loss_steps_the_markov_model_as_the_dream_does(one_torch_thread: None) -> None:
    """``speed_rollout_mse`` steps the Markov speed model alone from each window's first speed, exactly as the dream
    steps it, and trains only the speed model. On speeds read through noise, a one-step fit learns a biased car
    (noise in s_t attenuates its coefficient: regression dilution) that drifts over many steps; the fit with the
    rollout loss drifts far less."""
    from core.envs.dream import BatchedDream

    with pytest.raises(ConfigError, match="speed-rollout-weight must be >= 0, and > 0 only with --speed-model markov"):
        MemoryTrainConfig(speed_weight=1.0, speed_input=True, speed_rollout_weight=1.0)
    cfg = MDNRNNConfig(z_dim=2, hidden_dim=16, n_gaussians=2, speed_weight=10.0, speed_input=True, speed_model="markov")
    with pytest.raises(ValueError, match="has none"):
        MDNRNN(dataclasses.replace(cfg, speed_model="lstm")).speed_rollout_mse(_pulse_batch(0))

    def fit(weight: float) -> tuple[MDNRNN, float]:
        torch.manual_seed(1)
        model = MDNRNN(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for i in range(300):
            batch = _noisy_pulse_batch(i)[0]
            loss = model.loss(batch)[0] + (weight * model.speed_rollout_mse(batch) if weight else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        batch, true = _noisy_pulse_batch(10_000, batch=256, steps=60)
        assert isinstance(model.speed_head, MarkovSpeed)
        with torch.no_grad():  # 60 steps from the true speed, against the true speeds
            rolled = model.speed_head.rollout(batch["z"][:, :-1], batch["action"], true[:, :1] / 100.0)[..., 0] * 100.0
        return model, float((rolled - true[:, 1:]).pow(2).mean().sqrt())

    (_, one_step), (m, rollout) = fit(0.0), fit(1.0)
    assert rollout < 0.5 * one_step  # units/s over 60 steps (seen: 2.1 against 8.5)
    batch = _pulse_batch(5, batch=3, steps=6)
    m.zero_grad()
    m.speed_rollout_mse(batch).backward()
    assert m.speed_head is not None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.speed_head.parameters())
    assert all(p.grad is None or not p.grad.any() for p in m.lstm.parameters())  # the rollout reads no h
    dream = BatchedDream(m, 3, tau=0.0, max_steps=10)
    dream.reset([0, 1, 2], z=batch["z"][:, 0], speed=batch["speed_in"][:, 0])
    stepped = []
    for t in range(6):
        dream.z = batch["z"][:, t].clone()  # the window's frames, as the rollout reads them
        dream.step(batch["action"][:, t])
        stepped.append(dream.speed.clone())
    assert not dream.done.any()
    with torch.no_grad():
        rolled = m.speed_head.rollout(batch["z"][:, :-1], batch["action"], batch["speed_in"][:, :1] / 100.0)[..., 0]
        rolled = rolled * 100.0
    torch.testing.assert_close(rolled, torch.stack(stepped, 1), atol=1e-3, rtol=1e-4)
