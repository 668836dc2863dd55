"""Dream-vs-real divergence on short real CarRacing episodes: open loop, closed loop, and reality replayed on the
track (nudged, coasting)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.checkpoint import load_model
from core.data.episodes import list_episodes, read_episode
from core.divergence import DivergenceConfig, dream_divergence
from core.divergence_table import format_table
from core.envs.car_racing import preprocess_frames
from core.errors import ConfigError, EpisodeError
from core.metrics.road import road_share

pytestmark = pytest.mark.slow


def test_dream_divergence_on_real_episodes(pipeline: dict[str, Path], real_episodes: Path) -> None:
    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(1, 10),
        warmup=5, start_every=20, samples=3, tau=0.0,
    )  # fmt: skip
    first, again = dream_divergence(cfg).metrics, dream_divergence(cfg).metrics
    assert first == again  # tau = 0: the dream is deterministic
    assert first["divergence/windows"] == 3 * 3  # starts 5, 25, 45 in each 60-step episode (45 + 10 <= 60)
    # the copy baseline at k = 1 is the mean squared change of mu between consecutive real frames
    vae = load_model(pipeline["vision"], "conv_vae")
    changes = []
    for path in sorted(real_episodes.glob("ep_*.npz")):
        frames = read_episode(path).frames
        x = torch.from_numpy(preprocess_frames(frames, 64)).float() / 255.0
        with torch.no_grad():
            mu = vae.encode(x)[0]
        changes += [float((mu[s + 1] - mu[s]).pow(2).mean()) for s in (5, 25, 45)]
    assert first["divergence/latent_mse_copy@1"] == pytest.approx(np.mean(changes), rel=1e-4)
    assert 0.0 <= first["divergence/off_manifold_share"] <= 1.0
    assert first["divergence/pixel_mse_vision@1"] > 0
    # road share of the real frames at 64x64 is the metric applied to the same frames, window by window
    real_road = []
    for path in sorted(real_episodes.glob("ep_*.npz")):
        x = torch.from_numpy(preprocess_frames(read_episode(path).frames, 64)).float() / 255.0
        real_road += [float(road_share(x[s + 10 : s + 11])[0]) for s in (5, 25, 45)]
    assert first["divergence/road_share_real@10"] == pytest.approx(np.mean(real_road), abs=1e-6)
    # the mean-frame baseline: each window's real frame against the mean frame of the other episodes
    xs = [torch.from_numpy(preprocess_frames(read_episode(p).frames, 64)).float() / 255.0
          for p in sorted(real_episodes.glob("ep_*.npz"))]  # fmt: skip
    others = [torch.cat([x for j, x in enumerate(xs) if j != e]).mean(0) for e in range(len(xs))]
    mean_mse = [float((others[e] - x[s + 10]).pow(2).mean()) for e, x in enumerate(xs) for s in (5, 25, 45)]
    assert first["divergence/pixel_mse_mean@10"] == pytest.approx(np.mean(mean_mse), rel=1e-5)
    assert 0.0 <= first["divergence/road_tracked@10"] <= 1.0 and 0.0 <= first["divergence/road_kept@10"] <= 1.0
    real_reward = []
    for path in sorted(real_episodes.glob("ep_*.npz")):
        rewards = read_episode(path).rewards
        real_reward += [float(rewards[s : s + 10].sum()) for s in (5, 25, 45)]
    assert first["divergence/reward_sum_real@10"] == pytest.approx(np.mean(real_reward), rel=1e-5)
    # parked: reality replayed to the middle window and braked 10 steps; CarRacing pays -0.1 a step plus any
    # tile the braking car still reaches, so at most 10 steps of -0.1 below zero
    assert first["divergence/parked_reward_real@10"] >= -1.0 - 1e-6
    assert np.isfinite(first["divergence/parked_reward_dream@10"])
    # steering response: measured in the dream (3 samples) and in reality (the track replayed), both finite
    assert np.isfinite(first["divergence/steer_response_dream"]) and np.isfinite(
        first["divergence/steer_response_real"]
    )
    # parked from the reset frame with no input: the car never moves; reality pays the tiles under the car at
    # the first step, then -0.1 a step
    from core.envs.car_racing import make_real_env

    env, expected = make_real_env(), []
    for path in sorted(real_episodes.glob("ep_*.npz")):
        env.reset(seed=int(read_episode(path, frames=False).seed))
        rewards = [env.step(np.zeros(3, np.float32))[1] for _ in range(10)]
        assert rewards[1:] == pytest.approx([-0.1] * 9)
        expected.append(sum(rewards))
    env.close()
    assert first["divergence/parked_start_reward_real@10"] == pytest.approx(np.mean(expected), abs=1e-4)
    with pytest.raises(EpisodeError, match="longer than"):
        dream_divergence(DivergenceConfig(**{**cfg.__dict__, "horizons": (100,)}))


def test_closed_loop_divergence_is_the_dream_driven_by_the_controller(
    pipeline: dict[str, Path], real_episodes: Path, tmp_path: Path
) -> None:
    from core.checkpoint import save_checkpoint
    from core.envs.dream import BatchedDream
    from core.models.controller import Controller, ControllerConfig

    controller = Controller(ControllerConfig())
    with torch.no_grad():  # a constant driver: gas tanh(1) / 2 + 1 / 2, steering tanh(0.5), no brake
        controller.fc.weight.zero_()
        controller.fc.bias.copy_(torch.tensor([0.5, 1.0, -1.0]))
    path = save_checkpoint(tmp_path / "c.safetensors", controller, kind="controller", config=controller.config)
    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(5, 10),
        warmup=5, start_every=20, samples=1, tau=0.0, parked=False, steer=False, controller=path,
    )  # fmt: skip
    metrics = dream_divergence(cfg).metrics
    # by hand: M over reality to each window start, then the dream stepped with the controller's constant action
    vae, memory = load_model(pipeline["vision"], "conv_vae"), load_model(pipeline["memory"], "mdnrnn")
    action = controller(torch.zeros(1, 288))
    roads, rewards = {5: [], 10: []}, {5: [], 10: []}
    for f in sorted(real_episodes.glob("ep_*.npz")):
        ep = read_episode(f)
        x = torch.from_numpy(preprocess_frames(ep.frames, 64)).float() / 255.0
        with torch.no_grad():
            mu = vae.encode(x)[0]
            state = memory.initial_state(1)
            for t in range(46):
                if t in (5, 25, 45):
                    dream = BatchedDream(memory, 1, tau=0.0, max_steps=10)
                    dream.reset([0], z=mu[t : t + 1], state=state)
                    total = 0.0
                    for k in range(1, 11):
                        total += float(dream.step(action)[1][0])
                        if k in roads:
                            roads[k].append(float(road_share(vae.decode(dream.z))[0]))
                            rewards[k].append(total)
                _, state = memory.step(mu[t : t + 1], torch.from_numpy(ep.actions[t : t + 1]), state)
    for k in (5, 10):
        assert metrics[f"divergence/closed_road_share_dream@{k}"] == pytest.approx(np.mean(roads[k]), abs=1e-5)
        assert metrics[f"divergence/closed_reward_sum_dream@{k}"] == pytest.approx(np.mean(rewards[k]), abs=1e-4)
        assert 0.0 <= metrics[f"divergence/closed_road_kept@{k}"] <= 1.0


def test_nudged_reality_replays_the_track_and_without_a_nudge_is_reality(
    pipeline: dict[str, Path], real_episodes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.divergence

    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(3, 10),
        warmup=5, start_every=20, samples=1, parked=False, steer=False, nudge=True,
    )  # fmt: skip
    monkeypatch.setattr(core.divergence, "NUDGE", 0.0)
    plain = dream_divergence(cfg).metrics
    for k in (3, 10):  # no nudge: the replay gives the recorded frames, so it tracks reality everywhere
        assert plain[f"divergence/nudged_road_share@{k}"] == pytest.approx(
            plain[f"divergence/road_share_real@{k}"], abs=1e-6
        )
        assert plain[f"divergence/nudged_road_tracked@{k}"] == 1.0
    monkeypatch.setattr(core.divergence, "NUDGE", 1.0)
    monkeypatch.setattr(core.divergence, "NUDGE_STEPS", 8)
    pushed = dream_divergence(cfg).metrics  # a hard push moves the road in the frame
    assert pushed["divergence/nudged_road_share@10"] != pytest.approx(
        plain["divergence/nudged_road_share@10"], abs=1e-4
    )


def test_coasting_pairs_the_dream_with_reality_replayed_without_gas(
    pipeline: dict[str, Path], real_episodes: Path, speed_memory: Path
) -> None:
    """With an M that has a speed head, the speeds too: M's head in the dream against the HUD in reality."""
    from core.data.episodes import read_episode
    from core.envs.car_racing import hud_speed, make_real_env

    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=speed_memory, horizons=(3, 10),
        warmup=5, start_every=20, samples=2, parked=False, steer=False, coast=True,
    )  # fmt: skip
    m = dream_divergence(cfg).metrics
    # the recorded actions' figures of the same windows and random streams are the plain ones
    assert m["divergence/coast_recorded_real@10"] == pytest.approx(m["divergence/reward_sum_real@10"], abs=1e-6)
    assert m["divergence/coast_recorded_dream@10"] == pytest.approx(m["divergence/reward_sum_dream@10"], abs=1e-4)
    assert m["divergence/coast_reward_dream@10"] != pytest.approx(m["divergence/reward_sum_dream@10"], abs=1e-6)
    expected, speeds, recorded_speeds = [], [], []  # reality by hand: the track replayed to each window start,
    for path in list_episodes(real_episodes):  # then the recorded steering, no gas
        ep = read_episode(path)
        for s0 in range(5, len(ep.actions) - 10 + 1, 20):
            env = make_real_env()
            env.reset(seed=int(ep.seed))
            for t in range(s0):
                env.step(np.asarray(ep.actions[t], np.float32))
            total = 0.0
            for t in range(s0, s0 + 10):
                action = np.asarray(ep.actions[t], np.float32).copy()
                action[1] = 0.0
                obs, r, *_ = env.step(action)
                total += float(r)
            env.close()
            expected.append(total)
            speeds.append(float(hud_speed(obs)))
            recorded_speeds.append(float(hud_speed(ep.frames[s0 + 10])))
    assert m["divergence/coast_reward_real@10"] == pytest.approx(np.mean(expected), abs=1e-4)
    assert m["divergence/coast_speed_real@10"] == pytest.approx(np.mean(speeds), abs=1e-4)
    assert m["divergence/speed_real@10"] == pytest.approx(np.mean(recorded_speeds), abs=1e-4)
    assert np.isfinite(m["divergence/speed_dream@10"]) and np.isfinite(m["divergence/coast_speed_dream@10"])
    assert "speed after 10 steps of coasting" in format_table(m, cfg.horizons)


def test_coasting_with_the_brake_held_stops_reality_sooner(
    pipeline: dict[str, Path], real_episodes: Path, speed_memory: Path
) -> None:
    """``coast_brake`` holds the brake while coasting: reality's car ends slower than coasting alone; out of [0, 1]
    is a config error."""
    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=speed_memory, horizons=(10,),
        warmup=5, start_every=20, samples=2, parked=False, steer=False, coast=True,
    )  # fmt: skip
    free = dream_divergence(cfg).metrics
    braked = dream_divergence(dataclasses.replace(cfg, coast_brake=1.0)).metrics
    assert braked["divergence/coast_speed_real@10"] < 0.8 * free["divergence/coast_speed_real@10"]
    assert np.isfinite(braked["divergence/coast_speed_dream@10"])
    assert "no gas, brake 1.00" in format_table(braked, cfg.horizons)
    with pytest.raises(ConfigError, match="coast_brake must be in"):
        dataclasses.replace(cfg, coast_brake=1.5)


def test_strip_shows_reality_above_the_dream_at_each_horizon(
    pipeline: dict[str, Path], real_episodes: Path, tmp_path: Path
) -> None:
    import cv2

    out = tmp_path / "strip.png"
    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=pipeline["memory"], horizons=(1, 10),
        warmup=5, start_every=20, samples=2, tau=0.0, parked=False, steer=False, strip=out, strip_windows=4,
    )  # fmt: skip
    with_strip = dream_divergence(cfg).metrics
    assert with_strip == dream_divergence(dataclasses.replace(cfg, strip=None)).metrics  # figures unchanged
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    side, margin, header = 192, 150, 28
    # 4 windows (3 in the first episode, 1 in the second) x (reality, dream); columns: start and each horizon
    assert img.shape == (header + 4 * 2 * side, margin + 3 * side, 3)
    # the first episode's second window (start 25): reality's frame 25 + 10 at 64x64, upscaled 3x, in row 2 column 2
    frames = read_episode(sorted(real_episodes.glob("ep_*.npz"))[0]).frames
    real = preprocess_frames(frames[35:36], 64)[0].transpose(1, 2, 0)  # uint8 (64, 64, 3)
    tile = img[header + 2 * side : header + 3 * side, margin + 2 * side : margin + 3 * side]
    below_label = slice(40, side)  # the road share is written in the top rows of the 64x64 tile (3x here)
    assert (
        np.abs(tile[below_label, :].astype(int) - np.kron(real, np.ones((3, 3, 1), np.uint8))[below_label]).max() <= 1
    )
    # the dream's start is V's reconstruction of reality's start (frame 5), not the frame itself
    from core.envs.car_racing import to_uint8_hwc
    from core.envs.world_model import WorldModel

    wm = WorldModel.load(pipeline["vision"], pipeline["memory"])
    recon = to_uint8_hwc(wm.decode(wm.encode(frames[5:6])[0]))[0]
    dream_start = img[header + side : header + 2 * side, margin : margin + side].astype(int)
    real_start = img[header : header + side, margin : margin + side].astype(int)
    assert np.abs(dream_start - np.kron(recon, np.ones((3, 3, 1), np.uint8)))[below_label].max() <= 1
    assert np.abs(dream_start - real_start)[below_label].mean() > 1
    with pytest.raises(ConfigError, match="strip_windows"):
        DivergenceConfig(strip_windows=0)
    # an image that cannot be written is refused before any dream runs (the checkpoints are not even read)
    from core.errors import OutputError

    (tmp_path / "a_file").write_text("")
    bad = dataclasses.replace(cfg, strip=tmp_path / "a_file" / "strip.png", memory=tmp_path / "missing.safetensors")
    with pytest.raises(OutputError, match="strip image"):
        dream_divergence(bad)
