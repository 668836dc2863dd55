"""Data that show driving and the dream-fidelity metric: policy labels and mixes, road share, exploration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes, SequenceSampler, episode_weights, parse_mix
from core.errors import ConfigError, EpisodeError
from core.metrics.road import road_offset, road_share, tracks_road
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.train.memory import DREAM_CHECK_WARMUP, dream_latent_error, train_memory

ROAD = (102 / 255, 102 / 255, 102 / 255)
GRASS = (102 / 255, 204 / 255, 102 / 255)


def _frames(road_columns: list[int], size: int = 64) -> torch.Tensor:
    """Frames (N, 3, size, size): grass with the first ``road_columns[i]`` columns grey road."""
    x = torch.tensor(GRASS).view(1, 3, 1, 1).repeat(len(road_columns), 1, size, size)
    for i, cols in enumerate(road_columns):
        x[i, :, :, :cols] = torch.tensor(ROAD).view(3, 1, 1)
    return x


def test_road_share_of_synthetic_frames_is_the_painted_share() -> None:
    share = road_share(_frames([0, 16, 32, 64]))
    assert share.tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0])


def test_road_share_ignores_kerbs_car_void_and_white() -> None:
    x = _frames([32])
    x[0, :, :8, :8] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # red kerb / car on the road half
    x[0, :, 8:16, :8] = 1.0  # white kerb
    x[0, :, 16:24, :8] = 0.0  # black void
    assert float(road_share(x)[0]) == pytest.approx((32 * 64 - 3 * 64) / 64**2)


def test_a_blurred_green_grey_edge_is_not_road() -> None:
    x = _frames([0])
    x[0] = (torch.tensor(ROAD) * 0.5 + torch.tensor(GRASS) * 0.5).view(3, 1, 1)  # chroma 0.2
    assert float(road_share(x)[0]) == 0.0


def test_road_offset_locates_a_painted_road_band_left_or_right_of_the_car() -> None:
    x = torch.tensor(GRASS).view(1, 3, 1, 1).repeat(3, 1, 64, 64).clone()
    road = torch.tensor(ROAD).view(3, 1, 1)
    x[0, :, :, 10:20] = road  # columns 10..19: centre 14.5, the frame's 31.5 -> -17 px
    x[1, :, :, 40:50] = road  # centre 44.5 -> +13 px
    offset, has_road = road_offset(x)
    assert offset.tolist()[:2] == pytest.approx([-17.0, 13.0]) and has_road.tolist() == [True, True, False]
    assert float(offset[2]) == 0.0  # all grass: no road to locate


def test_tracks_road_needs_road_where_reality_has_it_and_none_where_it_has_none() -> None:
    real = torch.tensor([0.2, 0.2, 0.2, 0.0, 0.0])
    dream = torch.tensor([0.2, 0.11, 0.09, 0.015, 0.2])
    assert tracks_road(dream, real).tolist() == [True, True, False, True, False]


def _latents(policies: list[str], steps: int = 30) -> LatentEpisodes:
    e = len(policies)
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((e * (steps + 1), 4)).astype(np.float32)
    # episode i's actions all equal i, so a window tells which episode it came from
    actions = np.repeat(np.arange(e, dtype=np.float32), steps)[:, None].repeat(3, 1)
    return LatentEpisodes(
        mu=mu, logvar=np.zeros_like(mu), actions=actions, rewards=np.zeros(e * steps, np.float32),
        terminated=np.zeros(e * steps, np.float32), starts=np.arange(e + 1) * (steps + 1), seeds=np.arange(e),
        vision_kind="conv_vae", vision_sha256="x", policies=np.array(policies),
    )  # fmt: skip


def test_latents_keep_policy_labels_through_a_file(tmp_path: Path) -> None:
    latents = _latents(["random", "controller", "controller"])
    back = LatentEpisodes.load(latents.save(tmp_path / "l.npz"))
    assert back.policies.tolist() == ["random", "controller", "controller"]
    assert back.policy_counts() == {"controller": 2, "random": 1}


def test_a_latent_file_without_labels_reads_as_random(tmp_path: Path) -> None:
    latents = _latents(["random", "random"])
    arrays = {k: getattr(latents, k) for k in ("mu", "logvar", "actions", "rewards", "terminated", "starts", "seeds")}
    np.savez(tmp_path / "old.npz", **arrays, vision_kind=np.array("conv_vae"), vision_sha256=np.array("x"))
    assert LatentEpisodes.load(tmp_path / "old.npz").policies.tolist() == ["random", "random"]


def test_mixed_windows_follow_the_stated_proportions() -> None:
    # 1 controller episode against 3 random ones; asked for 70% controller windows
    latents = _latents(["controller", "random", "random", "random"])
    sampler = SequenceSampler(latents, [0, 1, 2, 3], seq_len=5, seed=0, mix=parse_mix("controller:0.7,random:0.3"))
    ids = np.concatenate([sampler.batch(64)["action"][:, 0, 0].numpy() for _ in range(40)])
    share = float(np.mean(ids == 0))
    assert 0.66 < share < 0.74  # 2,560 windows: 0.70 +- 0.009 (1 sd)
    # without a mix every episode is equally likely, so the one controller episode gets a quarter
    plain = SequenceSampler(latents, [0, 1, 2, 3], seq_len=5, seed=0)
    ids = np.concatenate([plain.batch(64)["action"][:, 0, 0].numpy() for _ in range(40)])
    assert 0.21 < float(np.mean(ids == 0)) < 0.29


def test_bad_mixes_are_one_line_errors() -> None:
    for text in ("controller", "controller:0", "controller:x", "a:1,a:2", "controller:inf"):
        with pytest.raises(ConfigError):
            parse_mix(text)
    with pytest.raises(EpisodeError, match="no episodes of"):
        episode_weights(np.array(["random"]), {"random": 1.0, "controller": 1.0})
    with pytest.raises(EpisodeError, match="no weight for"):
        episode_weights(np.array(["random", "controller"]), {"random": 1.0})


class _ScriptedWorldModel:
    """The parts of a WorldModel a ControllerPolicy uses, with a controller that always steers 0.3, gas 0.1."""

    class _C(torch.nn.Module):
        config = type("cfg", (), {"hidden_dim": 0})()

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return torch.tensor([0.3, 0.1, 0.0])

    controller = _C()
    memory = None
    z_dim = 4

    def encode(self, frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(1, 4), torch.zeros(1, 4)


def test_controller_policy_explores_steering_and_takes_excursions_reproducibly() -> None:
    from core.policies_wm import ControllerPolicy

    policy = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.2, excursion_prob=0.02)  # type: ignore[arg-type]
    frame = np.zeros((96, 96, 3), np.uint8)

    def drive(seed: int) -> np.ndarray:
        policy.reset(seed)
        return np.stack([policy.act(frame) for _ in range(2000)])

    a = drive(5)
    assert np.array_equal(a, drive(5)) and not np.array_equal(a, drive(6))
    mine = (a[:, 1] == np.float32(0.1)) & (a[:, 2] == 0)  # C's own gas and brake, untouched by noise
    assert 0.6 < mine.mean() < 0.95  # the rest are excursions: ~2% per step x ~17 steps each
    assert abs(float(a[mine, 0].mean()) - 0.3) < 0.03 and 0.15 < float(a[mine, 0].std()) < 0.25
    held = a[~mine]
    assert len(np.unique(held[:, 0])) < len(held) / 5  # an excursion holds one action for 5-30 steps


def test_gas_holds_keep_c_steering_and_hold_one_random_gas_for_20_to_80_steps() -> None:
    from core.policies_wm import ControllerPolicy

    policy = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.0, gas_hold_prob=0.02)  # type: ignore[arg-type]
    frame = np.zeros((96, 96, 3), np.uint8)
    policy.reset(7)
    a = np.stack([policy.act(frame) for _ in range(5000)])
    assert np.all(a[:, 0] == np.float32(0.3)) and np.all(a[:, 2] == 0)  # C steers throughout, no brake
    held = a[:, 1] != np.float32(0.1)
    assert 0.35 < held.mean() < 0.7  # 2% per step x ~50 steps each, starting only outside a hold
    runs = np.split(a[:, 1], np.flatnonzero(np.diff(a[:, 1]) != 0) + 1)
    lengths = [len(r) for r in runs if r[0] != np.float32(0.1)]
    assert min(lengths) >= 1 and max(lengths) <= 2 * 80  # two holds may meet only end to end
    assert np.median(lengths) >= 20  # a hold lasts 20-80 steps (a run is shorter only where the data end)
    gases = np.array([r[0] for r in runs if r[0] != np.float32(0.1)])
    assert gases.min() < 0.25 and gases.max() > 0.75  # U(0, 1): coasting and full gas both shown
    off = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.0)  # type: ignore[arg-type]
    off.reset(7)
    assert all(off.act(frame)[1] == np.float32(0.1) for _ in range(500))  # the default: no holds


def test_correlated_steering_noise_is_an_ar1_process_with_the_stated_std_and_correlation_time() -> None:
    from core.policies_wm import ControllerPolicy

    frame = np.zeros((96, 96, 3), np.uint8)

    def noise(corr: float) -> np.ndarray:
        policy = ControllerPolicy(_ScriptedWorldModel(), noise_std=0.2, noise_corr_steps=corr)  # type: ignore[arg-type]
        policy.reset(3)
        return np.stack([policy.act(frame) for _ in range(20_000)])[:, 0] - np.float32(0.3)

    def lag1(n: np.ndarray) -> float:
        return float(np.corrcoef(n[:-1], n[1:])[0, 1])

    white, held = noise(0.0), noise(10.0)
    assert 0.19 < white.std() < 0.21 and 0.18 < held.std() < 0.22  # stationary std = noise_std either way
    assert abs(lag1(white)) < 0.03  # white: independent steps
    assert abs(lag1(held) - np.exp(-1 / 10)) < 0.03  # AR(1): rho = exp(-1 / corr) = 0.905
    lag10 = float(np.corrcoef(held[:-10], held[10:])[0, 1])
    assert abs(lag10 - np.exp(-1.0)) < 0.08  # one correlation time: 1/e


def test_windows_name_their_episode_so_dreams_can_be_scored_per_policy(tmp_path: Path) -> None:
    # the sampler's train ids are a subset: the episode index must be the latent file's, not the subset's
    latents = _latents(["controller", "random", "random", "controller"])
    sampler = SequenceSampler(latents, [1, 2, 3], seq_len=5, seed=0)
    batch = sampler.batch(32)
    assert batch["episode"].tolist() == batch["action"][:, 0, 0].long().tolist()  # episode i's actions equal i
    assert set(batch["episode"].tolist()) <= {1, 2, 3}
    path = latents.save(tmp_path / "l.npz")
    with pytest.raises(ConfigError, match="offroad"):
        train_memory(MemoryTrainConfig(latents=path, out=tmp_path / "m.safetensors", epochs=1, seq_len=8, batch_size=2,
                                       open_loop_steps=3, open_loop_policies="random,offroad"))  # fmt: skip
    result = train_memory(MemoryTrainConfig(latents=path, out=tmp_path / "m.safetensors", epochs=1, seq_len=8,
                                            batch_size=4, hidden_dim=8, open_loop_steps=3, open_loop_policies="random"))  # fmt: skip
    assert math.isfinite(result.metrics["memory/train/open_loop_nll"])


def _script(name: str) -> Any:
    """The module of ``scripts/<name>.py`` (scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / f"scripts/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_latent_speed_measures_one_minus_the_autocorrelation() -> None:
    """scripts/latent_speed.py on AR(1) sequences x_{t+1} = phi x_t + noise, whose lag-k autocorrelation is
    phi^k: it prints 1 - phi^k (to sampling error), ~1 for white noise and 0 for a constant offset per episode."""
    module = _script("latent_speed")
    rng = np.random.default_rng(0)
    phi, n, features = 0.9, 20_000, 3
    x = np.zeros((n, features))
    noise = rng.normal(0.0, np.sqrt(1 - phi**2), (n, features))
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    lags = (1, 4, 16)
    got = module.decorrelation([x[:10_000], x[10_000:]], lags, x.var(0))
    assert np.allclose(got, [1 - phi**k for k in lags], atol=0.03)
    white = rng.normal(size=(5_000, 2))
    assert np.allclose(module.decorrelation([white], lags, white.var(0)), 1.0, atol=0.05)
    still = [np.full((50, 2), v) for v in (-1.0, 1.0)]
    assert module.decorrelation(still, (1,), np.concatenate(still).var(0)) == [0.0]


def _ramp_episode(steps: int, z_dim: int = 4) -> dict[str, torch.Tensor]:
    """z_t = 0.01 t in every dimension, zero actions: standing still's error after k steps is (0.01 k)^2."""
    z = (0.01 * torch.arange(steps + 1, dtype=torch.float32)).unsqueeze(1).expand(-1, z_dim)
    return {"z": z.unsqueeze(0).contiguous(), "action": torch.zeros(1, steps, 3)}


def test_the_dream_check_scores_standing_still_exactly_and_repeats_itself() -> None:
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(z_dim=4, hidden_dim=16, n_gaussians=3))
    episodes = [_ramp_episode(DREAM_CHECK_WARMUP + 150)]  # starts at steps 50 and 150 for 10-step dreams
    first = dream_latent_error(model, episodes, steps=10)
    expected_copy = 1e-4 * np.mean(np.arange(1, 11) ** 2)  # mean over k = 1..10 of (0.01 k)^2
    assert first["memory/val/dream_mse_copy"] == pytest.approx(expected_copy, rel=1e-4)
    assert first == dream_latent_error(model, episodes, steps=10)  # the same random streams every epoch
    # an untrained M dreams far off the slow ramp; only the scored dimensions count
    assert first["memory/val/dream_mse"] > 10 * first["memory/val/dream_mse_copy"]
    one = dream_latent_error(model, episodes, steps=10, active=np.array([True, False, False, False]))
    assert one["memory/val/dream_mse_copy"] == pytest.approx(expected_copy, rel=1e-4)
    assert one["memory/val/dream_mse"] != first["memory/val/dream_mse"]
    assert dream_latent_error(model, [_ramp_episode(DREAM_CHECK_WARMUP + 9)], steps=10) == {}  # too short: skipped
    with pytest.raises(ValueError, match="steps must be >= 1"):
        dream_latent_error(model, episodes, steps=0)


def test_memory_config_rejects_a_negative_dream_check() -> None:
    with pytest.raises(ConfigError, match="dream_check_steps must be >= 0"):
        MemoryTrainConfig(dream_check_steps=-1)


def test_pick_memory_picks_the_m_whose_dreams_track_the_road_on_every_check_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/pick_memory.py scores each M by its road tracking averaged over check sets and horizons: an M that
    tracks the agent's road best but loses it on random-policy episodes loses to one that is good on both."""
    import json

    module = _script("pick_memory")
    tracked = {("a", "agent"): 0.95, ("a", "random"): 0.10, ("b", "agent"): 0.80, ("b", "random"): 0.45}
    calls = []

    def fake_divergence(config):  # type: ignore[no-untyped-def]
        calls.append((config.memory.name, config.data_dir.name, config.parked, config.steer, config.horizons))
        share = tracked[(config.memory.name, config.data_dir.name)]
        metrics = {f"divergence/road_tracked@{k}": share for k in config.horizons}
        metrics |= {f"divergence/pixel_mse_dream@{k}": 0.5 for k in config.horizons}
        metrics |= {f"divergence/pixel_mse_copy@{k}": 1.0 for k in config.horizons}
        return type("Result", (), {"metrics": metrics})()

    monkeypatch.setattr(module, "dream_divergence", fake_divergence)
    out = tmp_path / "pick.json"
    argv = ["--vision", "v", "--memories", "a", "b", "--check-dirs", "agent", "random", "--json", str(out)]
    assert module.main(argv) == 0
    out_text = capsys.readouterr().out
    assert "picked: b (score 0.625)" in out_text and "coast" not in out_text
    assert json.loads(out.read_text())["scores"] == pytest.approx({"a": 0.525, "b": 0.625})
    assert calls[0] == ("a", "agent", False, False, (10, 30, 100, 200))  # open loop only, the scored horizons measured
    assert len(calls) == 4
    calls.clear()
    coast = {"coast_reward_dream": 200.0, "coast_recorded_dream": 190.0, "coast_reward_real": 110.0,
             "coast_recorded_real": 200.0}  # fmt: skip
    real_divergence = fake_divergence

    def fake_with_coast(config):  # type: ignore[no-untyped-def]
        result = real_divergence(config)
        if config.coast:
            result.metrics |= {f"divergence/{name}@200": value for name, value in coast.items()}
        return result

    monkeypatch.setattr(module, "dream_divergence", fake_with_coast)
    assert module.main([*argv, "--coast"]) == 0
    assert "dream 1.05 / real 0.55" in capsys.readouterr().out  # 200 / 190 and 110 / 200
    assert module.coast_ratios({}, 200) == "-"
    losing = {f"divergence/{name}@200": value for name, value in coast.items()} | {
        "divergence/coast_recorded_real@200": -15.7
    }
    assert module.coast_ratios(losing, 200) == "-"
    with pytest.raises(KeyError):
        module.score({"agent": {"divergence/road_tracked@100": 1.0}}, (100, 200))


def test_collect_config_rejects_a_gas_hold_probability_outside_0_1() -> None:
    from core.config import CollectConfig

    with pytest.raises(ConfigError, match="gas_hold_prob must be in"):
        CollectConfig(gas_hold_prob=1.5)
