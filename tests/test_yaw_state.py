"""The yaw rate as a car state of M (``MDNRNNConfig.yaw_input``): the Markov model steps it from the wheel, the LSTM
reads it, and the dream turns its road as much as the car that made the data."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_model
from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes, SequenceSampler
from core.envs.dream import BatchedDream
from core.errors import ConfigError
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.speed import YAW_MAX, MarkovSpeed
from core.train.fitness import DreamStarts
from core.train.memory import train_memory
from tests.conftest import fit_mdnrnn


def _true_yaw(yaw: torch.Tensor, steer: torch.Tensor) -> torch.Tensor:
    """The synthetic car's yaw rate after one step (rad/s): the wheel pulls it towards -6 steer (CarRacing's sign:
    steering right turns clockwise)."""
    return 0.8 * yaw - 1.2 * steer


def _turning_batch(seed: int, batch: int = 64, steps: int = 24) -> dict[str, torch.Tensor]:
    """A car at a steady 50 units/s whose wheel is held for a few steps at a time, and a frame z = (heading, noise)
    whose first dimension turns by 0.05 of the yaw rate each step, as a road rotates in a car-fixed view."""
    g = torch.Generator().manual_seed(seed)
    held = torch.rand(batch, steps // 4 + 1, generator=g) * 2 - 1
    steer = held.repeat_interleave(4, dim=1)[:, :steps]
    action = torch.stack([steer, torch.full((batch, steps), 0.5), torch.zeros(batch, steps)], dim=-1)
    yaw = torch.zeros(batch, steps + 1)
    yaw[:, 0] = torch.randn(batch, generator=g)
    z = torch.zeros(batch, steps + 1, 2)
    z[:, 0] = torch.randn(batch, 2, generator=g)
    for t in range(steps):
        yaw[:, t + 1] = _true_yaw(yaw[:, t], steer[:, t])
        z[:, t + 1, 0] = z[:, t, 0] + 0.05 * yaw[:, t + 1]
        z[:, t + 1, 1] = 0.9 * z[:, t, 1] + 0.1 * torch.randn(batch, generator=g)
    speed, zeros = torch.full((batch, steps + 1), 50.0), torch.zeros(batch, steps)
    return {
        "z": z, "action": action, "reward": zeros, "done": zeros, "speed": speed[:, 1:], "speed_in": speed[:, :-1],
        "yaw": yaw[:, 1:], "yaw_in": yaw[:, :-1],
    }  # fmt: skip


def _yaw_config(**kw: object) -> MDNRNNConfig:
    return MDNRNNConfig(
        z_dim=2, hidden_dim=16, n_gaussians=2, speed_weight=10.0, speed_input=True, speed_model="markov",
        yaw_input=True, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_dream_turns_its_road_as_much_as_the_car_when_m_steps_the_yaw_rate(one_torch_thread: None) -> None:
    """Fitted on a car whose wheel sets its yaw rate and whose yaw rate turns the frame, a dream held at full lock
    right and full lock left for 20 steps turns the frame by what the car would, both ways; the dream's yaw rate is
    the Markov model stepped alone; a missing yaw rate is a clear error."""
    with pytest.raises(ConfigError, match="needs speed_model 'markov'"):
        MDNRNNConfig(speed_weight=1.0, speed_input=True, yaw_input=True)
    with pytest.raises(ConfigError, match="--yaw-input needs --speed-model markov"):
        MemoryTrainConfig(speed_weight=1.0, speed_input=True, yaw_input=True)
    torch.manual_seed(0)
    m = MDNRNN(_yaw_config())
    assert m.lstm.input_size == 2 + 3 + 2  # z, a, speed, yaw
    assert isinstance(m.speed_head, MarkovSpeed) and m.speed_head.n_state == 2
    parts = fit_mdnrnn(m, _turning_batch, 500, 3e-3)
    assert parts["yaw_mse"] < 2e-3  # 0.22 rad/s per step, in YAW_SCALE units
    with pytest.raises(ValueError, match="yaw rate"):
        m.step(torch.zeros(1, 2), torch.zeros(1, 3), None, torch.zeros(1))
    turned = {}
    for sign in (-1.0, 1.0):
        dream = BatchedDream(m, 1, tau=0.0, max_steps=20)
        dream.reset([0], z=torch.zeros(2), speed=50.0, yaw=0.0)
        yaw, heading, yaws = torch.zeros(1), 0.0, []
        for _ in range(20):
            dream.step(torch.tensor([[sign, 0.5, 0.0]]))
            yaw = _true_yaw(yaw, torch.tensor([sign]))
            heading += 0.05 * float(yaw[0])
            yaws.append(float(dream.yaw[0]))
        turned[sign] = (float(dream.z[0, 0]), heading)
        assert yaws[-1] == pytest.approx(float(yaw[0]), abs=0.6)  # steady state -6 sign rad/s
        assert abs(yaws[-1]) <= YAW_MAX
    for sign, (dreamt, real) in turned.items():
        assert dreamt == pytest.approx(real, rel=0.25), sign  # the car turns 5.6 either way in 20 steps
    batch = _turning_batch(3, batch=2, steps=6)
    dream = BatchedDream(m, 2, tau=0.0, max_steps=10)
    dream.reset([0, 1], z=batch["z"][:, 0], speed=batch["speed_in"][:, 0], yaw=batch["yaw_in"][:, 0])
    stepped = []
    for t in range(6):
        dream.z = batch["z"][:, t].clone()  # the window's frames, as the rollout reads them
        dream.step(batch["action"][:, t])
        stepped.append(dream.yaw.clone())
    car0 = torch.stack([batch["speed_in"][:, 0] / 100.0, batch["yaw_in"][:, 0] / 5.0], dim=1)
    with torch.no_grad():
        rolled = m.speed_head.rollout(batch["z"][:, :-1], batch["action"], car0)[..., 1] * 5.0
    torch.testing.assert_close(rolled, torch.stack(stepped, 1), atol=1e-3, rtol=1e-4)
    assert float(m.speed_rollout_mse(batch)) > 0  # the rollout loss covers the yaw rate too


def test_train_memory_with_yaw_input_reads_the_hud_yaw_rates(pipeline: dict[str, Path], tmp_path: Path) -> None:
    """``train-memory --yaw-input`` trains an M that reads the yaw rate on a latent file written by encode, refuses
    one without yaw rates, and the dream's starts carry the recorded yaw rate of their frames."""
    lat = LatentEpisodes.load(pipeline["latents"])
    assert lat.yaw_rates is not None
    frame_index = dataclasses.replace(lat, yaw_rates=np.arange(len(lat.mu), dtype=np.float32))
    batch = SequenceSampler(frame_index, [1], 10, 0).batch(2, sample_z=False)  # yaw rate = the frame's index
    first = int(batch["yaw_in"][0, 0])
    assert lat.starts[1] <= first < lat.starts[2] - 10
    np.testing.assert_array_equal(batch["yaw_in"][0].numpy(), np.arange(first, first + 10))
    np.testing.assert_array_equal(batch["yaw"][0].numpy(), np.arange(first + 1, first + 11))
    cfg = MemoryTrainConfig(
        latents=pipeline["latents"], out=tmp_path / "m.safetensors", epochs=1, seq_len=16, batch_size=4,
        hidden_dim=16, speed_weight=1.0, speed_input=True, speed_model="markov", yaw_input=True,
        speed_rollout_weight=1.0, dream_check_steps=0,
    )  # fmt: skip
    result = train_memory(cfg)
    assert "memory/val/yaw_mse" in result.metrics
    assert result.checkpoint is not None
    m = load_model(result.checkpoint, "mdnrnn")
    assert isinstance(m, MDNRNN) and m.config.yaw_input
    starts = DreamStarts.from_latents(lat, m, 5, 10, 30, seed=0)
    assert starts.yaw is not None
    expected = [lat.episode(int(e))["yaw_rate"][int(t)] for e, t in zip(starts.episodes, starts.steps, strict=True)]
    np.testing.assert_allclose(starts.yaw.numpy(), expected)
    plain = dataclasses.replace(lat, yaw_rates=None).save(tmp_path / "plain.npz")
    with pytest.raises(ConfigError, match="needs yaw rates"):
        train_memory(dataclasses.replace(cfg, latents=plain, out=tmp_path / "m2.safetensors"))


def test_add_yaw_rates_fills_an_old_latent_file_from_its_episodes_frames(
    pipeline: dict[str, Path], real_episodes: Path, tmp_path: Path
) -> None:
    """scripts/add_yaw_rates.py gives a latent file written before encode read the yaw rate the same yaw rates
    encode writes (matched by seed and actions), and refuses one whose episodes it cannot find."""
    from tests.test_dream_fidelity import _script

    lat = LatentEpisodes.load(pipeline["latents"])
    old = dataclasses.replace(lat, yaw_rates=None).save(tmp_path / "old.npz")
    module = _script("add_yaw_rates")
    module.main(["--latents", str(old), "--data-dirs", str(real_episodes), "--out", str(tmp_path / "new.npz")])
    filled = LatentEpisodes.load(tmp_path / "new.npz")
    assert filled.yaw_rates is not None and lat.yaw_rates is not None
    np.testing.assert_array_equal(filled.yaw_rates, lat.yaw_rates)
    np.testing.assert_array_equal(filled.mu, lat.mu)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no episode files"):
        module.main(["--latents", str(old), "--data-dirs", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz")])
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(real_episodes.glob("ep_*.npz"))[0], one)
    with pytest.raises(SystemExit, match="is in none of"):
        module.main(["--latents", str(old), "--data-dirs", str(one), "--out", str(tmp_path / "x.npz")])
    assert not (tmp_path / "x.npz").exists()


def test_the_app_feeds_m_reality_s_yaw_rate_and_shows_both(data: Path, tmp_path: Path) -> None:
    """In split mode with an M that reads the yaw rate, the app's tracker feeds M the HUD's yaw rate of each real
    frame, a dream from the real frame starts at it, and the figures show reality's yaw rate (the hull's)."""
    from core.checkpoint import save_checkpoint
    from core.envs.car_racing import car_yaw_rate, hud_yaw_rate
    from explorer.input import DriveKeys
    from explorer.session import Session, SessionConfig

    s = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="split", seed=3))
    try:
        assert s.world_model is not None
        torch.manual_seed(0)
        m = MDNRNN(dataclasses.replace(_yaw_config(), z_dim=s.world_model.z_dim, hidden_dim=32))
        with torch.no_grad():
            m.head.bias[-1] = -20.0  # never done: the dream runs on
        assert s.load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", m, kind="mdnrnn", config=m.config))
        for _ in range(40):
            s.tick(DriveKeys(gas=True, left=True))
        assert s.yaw_rate == car_yaw_rate(s.env) and s.yaw_rate > 0.3  # steering left turns counter-clockwise
        tracker = s._tracker
        assert tracker is not None and tracker.yaw is not None
        assert float(tracker.yaw[0]) == pytest.approx(float(hud_yaw_rate(s.real_frame)))
        s.start_dream("real")
        assert s.dream is not None and s.dream.yaw_input
        assert float(s.dream.yaw[0]) == pytest.approx(float(hud_yaw_rate(s.real_frame)))
        s.tick(DriveKeys(gas=True, left=True))
        assert np.isfinite(s.dream.yaw.numpy()).all()
    finally:
        s.close()
