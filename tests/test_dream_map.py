"""The dream's map (core.envs.dream_map): its geometry against the real CarRacing view, and how it composes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from core.envs.car_racing import car_speed, car_yaw_rate, make_real_env, preprocess_frames, to_tensor
from core.envs.dream import BatchedDream
from core.envs.dream_map import CAR_SPRITE, DreamMap, dream_with_map, ground_z
from core.models import MDNRNN, MDNRNNConfig


def _drive(steps: int, steer: float, seed: int = 3) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Real frames at 96x96 (T + 1, 3, 96, 96) after the opening zoom, and the car's speed and yaw rate after each
    step (T,), driving with gas 0.5 and ``steer``."""
    env = make_real_env()
    obs, _ = env.reset(seed=seed)
    for _ in range(60):  # past CarRacing's opening zoom (its first second)
        obs, *_ = env.step(np.array([0.0, 0.3, 0.0], np.float32))
    frames, speed, yaw = [obs], [], []
    for _ in range(steps):
        obs, *_ = env.step(np.array([steer, 0.5, 0.0], np.float32))
        frames.append(obs)
        speed.append(car_speed(env))
        yaw.append(car_yaw_rate(env))
    env.close()
    return (
        to_tensor(preprocess_frames(np.stack(frames), 96)),
        np.asarray(speed, np.float32),
        np.asarray(yaw, np.float32),
    )


def _smooth(n: int, side: int) -> torch.Tensor:
    """n random pictures (n, 3, side, side) in [0, 1], as smooth as CarRacing's (the map resamples them)."""
    return torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8), size=side, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("steer", [0.0, -0.6])
def test_the_map_redraws_reality_from_the_car_s_own_motion(steer: float) -> None:
    """The first real frame, carried by the car's true speed and yaw rate, lands where reality shows the same
    ground 25 steps later: far closer than the frame itself (standing still) on the ground both show."""
    frames, speed, yaw = _drive(25, steer)
    world = DreamMap(1, 96)
    world.reset(frames[:1])
    for t in range(25):
        world.advance(torch.tensor(speed[t : t + 1]), torch.tensor(yaw[t : t + 1]))
    shown, known = world.render()
    real = frames[25]
    assert 0.3 < float(known.float().mean()) < 0.98  # the car moved: part of the view is new
    err = (shown[0] - real).pow(2).mean(0)[known[0]].mean()
    still = (frames[0] - real).pow(2).mean(0)[known[0]].mean()
    assert float(err) < 0.25 * float(still), (float(err), float(still))
    assert float(err) < 0.003


def test_a_car_that_stands_keeps_its_picture_and_shows_the_model_only_under_the_car() -> None:
    """The map's ground is shown everywhere it is kept except on the car's sprite, where M's frame (its car) shows,
    with a feathered edge: M's frame fades into the map's ground over a few pixels, not at a hard seam."""
    first, other = torch.full((3, 64, 64), 0.2), _smooth(1, 64)[0]  # reality's ground: one colour
    world = DreamMap(1, 64)
    world.reset(first[None], torch.tensor([[0.0, -8.0]]), torch.zeros(1))  # from 8 units back: the car's place too
    world.place(torch.zeros(1, 2), torch.zeros(1))
    world.write(first[None], whole=True)
    out = world.composite(other[None])[0]
    sprite = torch.zeros(64, 64, dtype=torch.bool)
    (c0, c1), (r0, r1) = CAR_SPRITE
    sprite[int(r0 * 64) : int(np.ceil(r1 * 64)), int(c0 * 64) : int(np.ceil(c1 * 64))] = True
    assert torch.equal(out[:, sprite], other[:, sprite])  # the car is always M's
    near = torch.nn.functional.max_pool2d(sprite[None, None].float(), 7, 1, 3)[0, 0].bool()
    ground = torch.zeros(64, 64, dtype=torch.bool)  # the ground, 3 px clear of the sprite and the frame's edge
    ground[3:-3, 3:-3] = True
    ground &= ~near
    assert float((out[:, ground] - first[:, ground]).abs().max()) < 0.03  # the ground is the map's
    assert float((out[:, ground] - other[:, ground]).abs().mean()) > 0.2
    edge = near & ~sprite  # the blend: between M's frame and the map's ground
    share = ((out - other) * (first - other)).sum(0)[edge] / (first - other).pow(2).sum(0)[edge].clamp(min=1e-6)
    assert 0.3 < float(share.min()) and float(share.max()) <= 1.0 + 1e-4 and float(share.mean()) < 0.95


def test_m_s_ground_is_live_in_view_and_comes_back_as_it_was_once_it_has_left() -> None:
    """New ground in view is M's current frame (M may still redraw it: a road that bends where the driver steers);
    once it has left the view, the map keeps M's last drawing of it and shows that when it comes back."""
    reality = torch.zeros(1, 3, 64, 64)
    world = DreamMap(1, 64)
    world.reset(reality)
    for guess in (0.5, 0.2):  # ahead, the top of the view is new: M's frame of this step, whatever it draws
        world.advance(torch.tensor([250.0]), torch.zeros(1))  # 5 units ahead: the top 7 rows are new
        out = world.composite(torch.full((1, 3, 64, 64), guess))
        assert float(out[0, :, :5].mean()) == pytest.approx(guess, abs=1e-4)
    assert float(out[0, :, 30:40].abs().max()) < 1e-4  # reality's ground, moved down
    half_turn = torch.tensor([math.pi * 50])
    world.advance(torch.zeros(1), half_turn)  # facing back: ground never seen, M's
    for _ in range(3):
        world.advance(torch.zeros(1), torch.zeros(1))
        out = world.composite(torch.full((1, 3, 64, 64), 0.5))
    assert float(out[0, :, 5:30].mean()) == pytest.approx(0.5, abs=1e-4)
    world.advance(torch.zeros(1), half_turn)  # facing ahead again: reality's ground; M's has left the view
    out = world.composite(torch.full((1, 3, 64, 64), 0.9))
    assert float(out[0, :, 30:40].abs().max()) < 1e-4
    world.advance(torch.zeros(1), half_turn)  # and back: M's earlier drawing, not what it draws now
    out = world.composite(torch.full((1, 3, 64, 64), 0.9))
    assert float(out[0, :, 15:30, 15:50].mean()) == pytest.approx(0.5, abs=0.02)


def test_dream_with_map_grounds_z_on_the_picture_it_shows(tiny_world_model: dict) -> None:
    from core.envs.world_model import WorldModel

    wm = WorldModel.load(tiny_world_model["vision"])
    torch.manual_seed(0)  # an untrained M: a seed whose car moves and turns (checked below), whatever ran before
    memory = MDNRNN(MDNRNNConfig(speed_input=True, yaw_input=True, speed_weight=1.0, speed_model="markov"))
    with torch.no_grad():
        memory.head.bias[-1] = -20.0  # never done: an untrained done head could end a dream, which keeps its z
    dream = BatchedDream(memory, 2, tau=0.5)
    z0 = torch.randn(2, memory.config.z_dim)
    dream.reset([1, 2], z=z0, speed=20.0, yaw=0.5)
    world = DreamMap(2, wm.size)
    world.reset(wm.decode(z0))
    dream.step(torch.tensor([[0.0, 1.0, 0.0]] * 2))
    shown = dream_with_map(wm.vision, dream, world)
    assert not bool(dream.done.any())  # an ended dream keeps its z
    assert torch.allclose(dream.z, wm.vision.encode(shown)[0])
    assert float(world.heading[0]) != 0.0 and float(world.position[0].norm()) > 0.0
    with pytest.raises(ValueError, match="yaw rate"):
        dream_with_map(wm.vision, BatchedDream(MDNRNN(MDNRNNConfig()), 2), world)


def test_divergence_with_the_map_shows_the_composites(pipeline: dict, real_episodes: Path, tmp_path: Path) -> None:
    """``divergence --dream-map``: an M that reads the yaw rate is required; with one, the dream shows the map, whose
    start picture moves with the car: one step on it is nearer reality than the start picture left standing (an
    untrained residual M's own dream barely moves from it)."""
    from core.checkpoint import save_checkpoint
    from core.divergence import DivergenceConfig, dream_divergence
    from core.errors import ConfigError

    base = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(1, 10), warmup=5,
        start_every=20, samples=2, tau=0.0, parked=False, steer=False, dream_map=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="yaw rate"):
        dream_divergence(base)
    with pytest.raises(ConfigError, match="map_history"):
        dataclasses.replace(base, map_history=-1)
    with pytest.raises(ConfigError, match="need dream_map"):
        dataclasses.replace(base, dream_map=False, map_pose="reality")
    # moved by reality's own speed and yaw rate, the map needs no yaw rate from M, and lands nearer reality
    true_motion = dream_divergence(dataclasses.replace(base, map_pose="reality", map_history=20)).metrics
    assert true_motion["divergence/pixel_mse_dream@10"] < true_motion["divergence/pixel_mse_copy@10"]
    torch.manual_seed(0)
    yaw_m = MDNRNN(MDNRNNConfig(speed_input=True, yaw_input=True, speed_weight=1.0, speed_model="markov"))
    path = save_checkpoint(tmp_path / "m_yaw.safetensors", yaw_m, kind="mdnrnn", config=yaw_m.config)
    plain = dream_divergence(dataclasses.replace(base, memory=path, dream_map=False)).metrics
    mapped = dream_divergence(dataclasses.replace(base, memory=path)).metrics
    assert mapped["divergence/windows"] == plain["divergence/windows"] == 9
    assert mapped == dream_divergence(dataclasses.replace(base, memory=path)).metrics  # tau 0: deterministic
    assert mapped["divergence/pixel_mse_dream@1"] < mapped["divergence/pixel_mse_copy@1"]
    assert plain["divergence/pixel_mse_dream@1"] >= plain["divergence/pixel_mse_copy@1"] - 1e-5


def test_ground_comes_back_after_the_canvas_scrolls() -> None:
    """Out 100 units (the canvas scrolls), turned about and back: the start ground is where it was, as a map that
    never moved shows it from the same pose."""
    smooth = _smooth(1, 64)
    trip, still = DreamMap(1, 64), DreamMap(1, 64)
    trip.reset(smooth)
    still.reset(smooth)
    trip.advance(torch.tensor([100.0 * 50]), torch.zeros(1))  # 100 units ahead in one step
    assert float(trip.origin[0].norm()) > 50.0  # it scrolled
    trip.advance(torch.zeros(1), torch.tensor([math.pi * 50]))  # turned about
    trip.advance(torch.tensor([100.0 * 50]), torch.zeros(1))  # and back to the start
    still.advance(torch.zeros(1), torch.tensor([math.pi * 50]))
    (seen, known), (expected, expected_known) = trip.render(), still.render()
    assert torch.allclose(trip.position, still.position, atol=1e-3)
    assert float(known.float().mean()) > 0.1 and torch.equal(known, expected_known)
    assert torch.allclose(seen, expected, atol=1e-4)


def test_v_re_encodes_every_live_dream_whose_frame_the_map_changed_even_by_a_sliver() -> None:
    """ground_z: a frame the map changed becomes the dream's z (V's encoding of it), however little it changed (a
    threshold let M's z drift off V's latents); an unchanged frame keeps M's z, as does a dream that had ended
    before the step."""

    class Vision:
        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            mu = x.flatten(1)[:, :4] * 10.0
            return mu, torch.zeros_like(mu)

    memory = MDNRNN(MDNRNNConfig(z_dim=4))
    dream = BatchedDream(memory, 4, tau=0.5)
    dream.reset([1, 2, 3, 4], z=torch.zeros(1, 4))
    dream.stepped = torch.tensor([True, True, True, False])
    decoded = torch.full((4, 3, 64, 64), 0.5)
    frames = decoded.clone()
    frames[0, :, :32] = 0.2  # half the picture: reality's ground
    frames[1, :, 63] = 0.54  # a sliver: the bottom row
    frames[3, :, :32] = 0.2  # ended
    ground_z(Vision(), dream, frames, decoded)
    assert torch.allclose(dream.z[0], torch.full((4,), 2.0))
    assert torch.allclose(dream.z[1], torch.full((4,), 5.0))
    assert torch.equal(dream.z[2:], torch.zeros(2, 4))
