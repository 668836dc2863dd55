"""The car's speed: read from the HUD of recorded frames, written by encode, and learned by M's speed head."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes, SequenceSampler
from core.data.episodes import list_episodes, read_episode
from core.envs.car_racing import hud_speed, hud_yaw_rate, make_real_env
from core.errors import ConfigError
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.speed import SPEED_MAX, MarkovSpeed
from core.train.memory import train_memory
from tests.conftest import fit_mdnrnn, random_latents


def test_encode_writes_the_hud_speed_of_every_frame(pipeline: dict[str, Path], real_episodes: Path) -> None:
    lat = LatentEpisodes.load(pipeline["latents"])
    assert lat.speeds is not None and lat.speeds.shape == (len(lat.mu),)
    first = read_episode(list_episodes(real_episodes)[0])
    np.testing.assert_array_equal(lat.episode(0)["speed"], hud_speed(first.frames))
    assert lat.speeds.max() > 1.0  # the random policy presses the gas
    assert lat.yaw_rates is not None and lat.yaw_rates.shape == (len(lat.mu),)
    np.testing.assert_array_equal(lat.episode(0)["yaw_rate"], hud_yaw_rate(first.frames))
    assert np.abs(lat.yaw_rates).max() > 0.1  # the random policy turns the wheel


def test_speeds_survive_save_subset_and_reach_the_windows(tmp_path: Path, pipeline: dict[str, Path]) -> None:
    plain = LatentEpisodes.load(random_latents(tmp_path / "plain.npz", pipeline["vision"], 4, episodes=3, steps=20))
    assert plain.speeds is None and "speed" not in SequenceSampler(plain, [0], 8, 0).batch(2)
    speeds = np.arange(len(plain.mu), dtype=np.float32)
    lat = LatentEpisodes.load(dataclasses.replace(plain, speeds=speeds).save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(lat.speeds, speeds)
    np.testing.assert_array_equal(lat.subset([2]).speeds, speeds[42:63])
    batch = SequenceSampler(lat, [1], 25, 0).batch(2, sample_z=False)
    # episode 1 holds frames 21..41 (speed = frame index): the targets are the speeds of frames 1..20 of it
    np.testing.assert_array_equal(batch["speed"][0, :20].numpy(), speeds[22:42])
    np.testing.assert_array_equal(batch["speed_in"][0, :20].numpy(), speeds[21:41])  # the input frames 0..19
    assert (batch["speed"][:, 20:] == 0).all() and (batch["mask"][:, 20:] == 0).all()
    full = SequenceSampler(lat, [1], 25, 0).full_episodes()[0]
    np.testing.assert_array_equal(full["speed"][0].numpy(), speeds[22:42])
    np.testing.assert_array_equal(full["speed_in"][0].numpy(), speeds[21:41])
    from core.train.iterate import merge_latents

    np.testing.assert_array_equal(merge_latents(lat, lat.subset([0])).speeds, np.concatenate([speeds, speeds[:21]]))
    assert merge_latents(lat, plain).speeds is None  # speeds only where every episode has them
    bad = dataclasses.replace(plain, speeds=speeds[:-1])
    assert "speeds must be float" in str(bad.problem())
    # yaw rates travel the same way (save, load, subset, merge), and only where every episode has them
    yaws = -speeds / 10
    both = LatentEpisodes.load(dataclasses.replace(lat, yaw_rates=yaws).save(tmp_path / "y.npz"))
    np.testing.assert_array_equal(both.yaw_rates, yaws)
    np.testing.assert_array_equal(both.subset([2]).episode(0)["yaw_rate"], yaws[42:63])
    np.testing.assert_array_equal(merge_latents(both, both.subset([0])).yaw_rates, np.concatenate([yaws, yaws[:21]]))
    assert merge_latents(both, lat).yaw_rates is None and lat.yaw_rates is None
    assert "yaw_rates must be float" in str(dataclasses.replace(plain, yaw_rates=yaws[:-1]).problem())
    assert "yaw_rates hold NaN" in str(dataclasses.replace(plain, yaw_rates=yaws * np.nan).problem())


def _pedal_batch(seed: int, batch: int = 32, steps: int = 40) -> dict[str, torch.Tensor]:
    """Frames that say nothing of the speed (z is noise) and a car that integrates its pedal:
    speed_{t+1} = 0.9 speed_t + 8 gas_t, with gas held at 0 or 1 for 10 steps at a time."""
    g = torch.Generator().manual_seed(seed)
    gas = (torch.rand(batch, steps // 10, 1, generator=g) > 0.5).float().repeat_interleave(10, dim=1)
    action = torch.cat([torch.zeros(batch, steps, 1), gas, torch.zeros(batch, steps, 1)], dim=-1)
    speed = torch.zeros(batch, steps + 1)
    for t in range(steps):
        speed[:, t + 1] = 0.9 * speed[:, t] + 8.0 * gas[:, t, 0]
    z = torch.randn(batch, steps + 1, 2, generator=g)
    zeros = torch.zeros(batch, steps)
    return {"z": z, "action": action, "reward": zeros, "done": zeros, "speed": speed[:, 1:], "speed_in": speed[:, :-1]}


def test_the_speed_head_integrates_the_pedal(one_torch_thread: None) -> None:
    torch.manual_seed(0)
    m = MDNRNN(MDNRNNConfig(z_dim=2, hidden_dim=16, n_gaussians=2, speed_weight=10.0))
    assert MDNRNN(MDNRNNConfig(z_dim=2, hidden_dim=16)).speed(torch.zeros(1, 16)) is None
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for i in range(250):
        loss, parts = m.loss(_pedal_batch(i))
        first = parts["speed_mse"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["speed_mse"] < 0.05 * first
    with torch.no_grad():  # step by step, as a dream runs: 30 steps of full gas, then 30 of none
        state, read = None, []
        for gas in [1.0] * 30 + [0.0] * 30:
            _, state = m.step(torch.randn(1, 2), torch.tensor([[0.0, gas, 0.0]]), state)
            read.append(float(m.speed(state[0][0])[0]))
    assert read[29] == pytest.approx(80.0 * (1 - 0.9**30), abs=8.0)  # near the car's top speed of 80
    assert read[59] < 0.25 * read[29]
    batch = _pedal_batch(0)
    del batch["speed"]
    with pytest.raises(ValueError, match="no speeds"):
        m.loss(batch)


def test_a_speed_head_needs_latents_with_speeds(tmp_path: Path, pipeline: dict[str, Path]) -> None:
    plain = random_latents(tmp_path / "plain.npz", pipeline["vision"], 4)
    with pytest.raises(ConfigError, match="encode the episodes again"):
        train_memory(MemoryTrainConfig(latents=plain, out=tmp_path / "m.safetensors", epochs=1, speed_weight=1.0))
    with pytest.raises(ConfigError, match="speed_weight"):
        MDNRNNConfig(speed_weight=-1.0)


def test_the_app_shows_the_dreams_speed_when_m_has_a_speed_head(data: Path, tmp_path: Path) -> None:
    from core.checkpoint import save_checkpoint
    from explorer.input import DriveKeys
    from explorer.session import Session, SessionConfig

    s = Session(
        SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="dream", seed=3, ground_dream=False)
    )  # M's own speed (a grounded dream shows its car's)
    try:
        s.tick(DriveKeys(gas=True))
        assert s.dream is not None and s.dream_speed is None  # the shipped-style M has no speed head
        torch.manual_seed(0)
        m = MDNRNN(MDNRNNConfig(speed_weight=1.0))
        with torch.no_grad():
            m.head.bias[-1] = -20.0  # never done: the dream runs on
        assert s.load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", m, kind="mdnrnn", config=m.config))
        for _ in range(5):
            s.tick(DriveKeys(gas=True))
        assert s.dream is not None and s.dream_tally.step == 5
        with torch.inference_mode():
            expected = s.dream.memory.speed(s.dream.h[:1])
        assert expected is not None and s.dream_speed == pytest.approx(float(expected[0]), abs=1e-5)
        assert len(s.history["dream_speed"].values()) == 6  # the restart's reading and one per step
    finally:
        s.close()


def test_stops_brake_to_rest_by_the_hud_then_stand_20_to_100_steps() -> None:
    from core.policies_wm import ControllerPolicy
    from tests.test_dream_fidelity import _ScriptedWorldModel

    moving = np.zeros((96, 96, 3), np.uint8)
    moving[91:94, 12:15] = 255  # a speed bar ~3 px tall: ~59 units/s
    at_rest = np.zeros((96, 96, 3), np.uint8)
    assert hud_speed(moving) > 50 and hud_speed(at_rest) == 0
    policy = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.0, stop_prob=0.01)  # type: ignore[arg-type]
    starts_parked = 0
    for seed in range(40):
        policy.reset(seed)
        speed, braked, actions = 59.0, 0, []
        for _ in range(1500):  # a car that stops after 6 braking steps and moves off with any gas
            a = policy.act(moving if speed > 0 else at_rest)
            braked = braked + 1 if a[2] == 1.0 else 0
            speed = 0.0 if braked >= 6 or (speed == 0 and a[1] == 0) else 59.0
            actions.append(a)
        a = np.stack(actions)
        kind = np.where(a[:, 2] == 1.0, 2, np.where((a == 0).all(1), 1, 0))  # 2 brake, 1 stand, 0 C drives
        runs = np.split(kind, np.flatnonzero(np.diff(kind) != 0) + 1)
        starts_parked += int(kind[0] == 1)
        assert set(np.unique(kind)) == {0, 1, 2}
        for before, run, after in zip(runs, runs[1:], runs[2:], strict=False):
            if run[0] == 2:  # a brake lasts until the HUD reads rest (6 steps here), then the stand follows
                assert len(run) == 6 and after[0] == 1
            if run[0] == 1 and before[0] == 2:
                assert 20 <= len(run) <= 100 and after[0] == 0
        assert np.all(a[kind == 0] == np.array([0.3, 0.1, 0.0], np.float32))  # otherwise C drives
    assert 10 <= starts_parked <= 30  # half the episodes begin parked
    from core.config import CollectConfig
    from core.train.iterate import IterateConfig

    for config in (CollectConfig, IterateConfig):  # collect and iterate rounds both take stops
        assert config().stop_prob == 0.0  # off by default
        with pytest.raises(ConfigError, match="stop_prob must be in"):
            config(stop_prob=-0.1)


def test_pedal_response_from_rest_reads_reality_and_each_dream(
    pipeline: dict[str, Path], real_episodes: Path, speed_memory: Path, tmp_path: Path
) -> None:
    from tests.test_dream_fidelity import _script

    head = speed_memory
    out = _script("pedal_response").main([
        "--data-dir", str(real_episodes), "--vision", str(pipeline["vision"]), "--memories", str(pipeline["memory"]),
        str(head), "--episodes", "2", "--gas", "0", "1", "--steps", "10", "--read-at", "5", "10", "--dreams", "2",
        "--json", str(tmp_path / "p.json"),
    ])  # fmt: skip
    env, expected = make_real_env(), []
    for path in list_episodes(real_episodes)[:2]:
        env.reset(seed=int(read_episode(path, frames=False).seed))
        expected.append(sum(float(env.step(np.zeros(3, np.float32))[1]) for _ in range(10)))
    env.close()
    assert out["reality"][0.0]["return"] == pytest.approx(np.mean(expected), abs=1e-5)
    assert out["reality"][0.0]["speed"] == [0.0, 0.0]  # no gas: the car stands
    assert out["reality"][1.0]["speed"][1] > out["reality"][1.0]["speed"][0] > 5.0  # full gas: it gathers speed
    assert out[str(pipeline["memory"])][0.0]["speed"] is None  # no speed head
    assert len(out[str(head)][1.0]["speed"]) == 2 and np.isfinite(out[str(head)][1.0]["return"])
    assert (tmp_path / "p.json").is_file()
    braked = _script("pedal_response").main([
        "--data-dir", str(real_episodes), "--vision", str(pipeline["vision"]), "--memories", str(head),
        "--episodes", "2", "--gas", "1", "--brake", "1", "--steps", "10", "--read-at", "5", "10", "--dreams", "2",
    ])  # fmt: skip
    assert braked["reality"][1.0]["speed"][1] < 0.5 * out["reality"][1.0]["speed"][1]  # the brake holds the car
    assert np.isfinite(braked[str(head)][1.0]["return"])
    with pytest.raises(SystemExit):  # argparse's one-line error
        _script("pedal_response").main(["--data-dir", str(real_episodes), "--vision", str(pipeline["vision"]),
                                        "--memories", str(head), "--brake", "1.5"])  # fmt: skip


def test_the_speed_read_out_is_never_negative_nor_above_the_cars_top_speed() -> None:
    m = MDNRNN(MDNRNNConfig(z_dim=2, hidden_dim=4, speed_weight=1.0))
    assert m.speed_head is not None
    with torch.no_grad():
        m.speed_head.weight.zero_()
        m.speed_head.bias.fill_(-0.3)  # the linear head says -30 units/s
    assert torch.equal(m.speed(torch.zeros(3, 4)), torch.zeros(3))
    batch = _pedal_batch(0, batch=2, steps=10)
    _, parts = m.loss(batch)  # the fit sees the raw output: -0.3 against speeds of 0..0.8 (units of 100)
    assert parts["speed_mse"] == pytest.approx(float(((batch["speed"] / 100 + 0.3) ** 2).mean()), rel=1e-5)
    with torch.no_grad():
        m.speed_head.bias.fill_(2.5)  # 250 units/s: faster than Box2D lets the car go
    assert torch.equal(m.speed(torch.zeros(3, 4)), torch.full((3,), SPEED_MAX))
    markov = MarkovSpeed(z_dim=2, action_dim=3, yaw=True)  # the Markov model's state is held in the same range
    state = markov.clamp(torch.tensor([[3.0, 9.0], [-1.0, -9.0]]))
    assert torch.equal(state, torch.tensor([[SPEED_MAX / 100, 3.0], [0.0, -3.0]]))


def test_an_m_that_reads_the_speed_dreams_it_on_its_own(one_torch_thread: None) -> None:
    """Trained on the pedal batches, an M with ``speed_input`` learns the change of speed; a dream then runs on its
    own sum of changes (the pedal drives it up and coasting lets it fall), the same as M stepped by hand."""
    from core.envs.dream import BatchedDream

    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="speed_input needs a speed head"):
        MDNRNNConfig(speed_input=True)
    m = MDNRNN(MDNRNNConfig(z_dim=2, hidden_dim=16, n_gaussians=2, speed_weight=10.0, speed_input=True))
    assert m.lstm.input_size == 2 + 3 + 1
    parts = fit_mdnrnn(m, _pedal_batch, 150, 1e-2)
    assert parts["speed_mse"] < 1e-3  # 3 units/s
    gas = [1.0] * 30 + [0.0] * 30
    dream = BatchedDream(m, 2, tau=1.0, max_steps=60)
    dream.reset([1, 2], z=torch.zeros(2))  # at rest by default
    read = []
    for g in gas:
        dream.step(torch.tensor([[0.0, g, 0.0]]).expand(2, 3))
        read.append(float(dream.speed[0]))
        assert torch.equal(dream.predicted_speed(), dream.speed)
    assert read[29] == pytest.approx(80.0 * (1 - 0.9**30), abs=8.0)
    assert read[59] < 0.25 * read[29]
    with torch.no_grad():  # M by hand on the dream's first steps: the same h and speeds
        m2 = BatchedDream(m, 1, tau=0.0, max_steps=5)
        m2.reset([0], z=torch.zeros(2), speed=20.0)
        state, s, z = None, torch.tensor([20.0]), torch.zeros(1, 2)
        for _ in range(5):
            m2.step(torch.tensor([[0.0, 1.0, 0.0]]))
            _, state = m.step(z, torch.tensor([[0.0, 1.0, 0.0]]), state, s)
            s = m.speed(state[0][0], s)
            z = m2.z.clone()
            torch.testing.assert_close(m2.h, state[0][0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(m2.speed, s, atol=1e-4, rtol=1e-5)
    batch = _pedal_batch(0)
    del batch["speed_in"]
    with pytest.raises(ValueError, match="reads the car's speed"):
        m.loss(batch)
    with pytest.raises(ValueError, match="reads the car's speed"):
        m.step(torch.zeros(1, 2), torch.zeros(1, 3), None)


def test_reality_feeds_the_hud_speed_to_an_m_that_reads_it(pipeline: dict[str, Path], tmp_path: Path) -> None:
    """The real-env wrapper reads the HUD of each frame into M; the app's tracker refuses to step without it."""
    from core.checkpoint import save_checkpoint
    from core.envs.world_model import RealTracker, WorldModel, WorldModelObservation

    wm = WorldModel.load(pipeline["vision"])
    m = MDNRNN(MDNRNNConfig(z_dim=wm.z_dim, hidden_dim=8, n_gaussians=2, speed_weight=1.0, speed_input=True))
    path = save_checkpoint(tmp_path / "m.safetensors", m, kind="mdnrnn", config=m.config)
    wm = WorldModel.load(pipeline["vision"], path)
    env = WorldModelObservation(make_real_env(), wm)
    env.reset(seed=3)
    for _ in range(60):
        _, _, _, _, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert env.tracker.speed is not None and float(env.tracker.speed[0]) == pytest.approx(hud_speed(info["frame"]))
    assert float(env.tracker.speed[0]) > 10.0
    state = env.state
    assert state is not None  # M by hand with the HUD's speed: the same next state
    z, s = env.z, env.tracker.speed
    _, expect = m.step(z, torch.tensor([[0.0, 1.0, 0.0]]), state, s)
    env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert env.state is not None
    torch.testing.assert_close(env.state[0], expect[0])
    env.close()
    tracker = RealTracker(wm)
    tracker.reset(torch.zeros(1, wm.z_dim))
    with pytest.raises(ValueError, match="reads the car's speed"):
        tracker.advance(np.zeros(3, np.float32))


def test_dream_starts_and_divergence_carry_realitys_speed(
    pipeline: dict[str, Path], real_episodes: Path, speed_input_memory: Path
) -> None:
    """Dreams of an M that reads the speed start at the HUD's speed of their real frame, after M ran over the real
    prefix with the real speeds; the divergence checks all run on it and report the dream's own speed."""
    from core.checkpoint import load_model
    from core.divergence import DivergenceConfig, dream_divergence
    from core.errors import CheckpointError
    from core.train.fitness import DreamStarts

    lat = LatentEpisodes.load(pipeline["latents"])
    m = load_model(speed_input_memory, "mdnrnn")
    starts = DreamStarts.from_latents(lat, m, 5, 3, 30, 0)
    assert starts.speed is not None
    for i, (e, t) in enumerate(zip(starts.episodes, starts.steps, strict=True)):
        ep = lat.episode(int(e))
        assert float(starts.speed[i]) == pytest.approx(float(ep["speed"][t]))
        with torch.no_grad():  # M by hand over the prefix, fed each frame's speed
            h = m.hidden_sequence(torch.from_numpy(ep["mu"][None, :t]), torch.from_numpy(ep["action"][None, :t]),
                                  None, torch.from_numpy(ep["speed"][None, :t]))  # fmt: skip
        torch.testing.assert_close(starts.h[i], h[0, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(CheckpointError, match="has none"):
        DreamStarts.from_latents(dataclasses.replace(lat, speeds=None), m, 2, 0, 10, 0)
    cfg = DivergenceConfig(
        data_dir=real_episodes, vision=pipeline["vision"], memory=speed_input_memory, horizons=(3, 10),
        warmup=5, start_every=20, samples=2, coast=True,
    )  # fmt: skip
    metrics = dream_divergence(cfg).metrics
    for key in ("speed_dream@10", "coast_speed_dream@10", "parked_reward_dream@10", "steer_response_dream"):
        assert np.isfinite(metrics[f"divergence/{key}"]), key
    assert metrics["divergence/speed_dream@10"] >= 0.0


def test_pedal_pulses_draw_gas_and_part_brakes_every_step_while_c_steers() -> None:
    """Pedal pulses (``pedal_pulse_prob``): C's steering throughout; in a pulse the pedals change every step, gas
    U(0, 1) and half the time brake U(0.1, 1), so gas and brake at once appear too; reproducible by seed."""
    from core.policies_wm import ControllerPolicy
    from tests.test_dream_fidelity import _ScriptedWorldModel

    frame = np.zeros((96, 96, 3), np.uint8)

    def drive(seed: int, prob: float = 0.02) -> np.ndarray:
        policy = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.0, pedal_pulse_prob=prob)  # type: ignore[arg-type]
        policy.reset(seed)
        return np.stack([policy.act(frame) for _ in range(5000)])

    a = drive(4)
    assert np.array_equal(a, drive(4)) and not np.array_equal(a, drive(5))
    assert np.all(a[:, 0] == np.float32(0.3))  # C steers throughout
    pulsed = (a[:, 1] != np.float32(0.1)) | (a[:, 2] != 0)
    assert 0.35 < pulsed.mean() < 0.6  # 2% per step x ~40 steps each, starting only outside pulses
    braking = a[pulsed, 2] > 0
    assert 0.4 < braking.mean() < 0.6 and a[pulsed][braking, 2].min() >= 0.1  # half the pulse steps brake, >= 0.1
    assert ((a[:, 1] > 0.5) & (a[:, 2] > 0.5)).mean() > 0.05  # gas and brake at once
    assert np.mean(np.diff(a[pulsed, 1]) != 0) > 0.95  # drawn afresh every step
    assert np.all(drive(4, prob=0.0)[:, 1:] == np.array([0.1, 0.0], np.float32))  # the default: no pulses
    from core.config import CollectConfig
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="pedal_pulse_prob must be in"):
        CollectConfig(pedal_pulse_prob=1.5)
