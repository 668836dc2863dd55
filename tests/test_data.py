"""Episode files, collection and datasets on real CarRacing-v3 rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.config import CollectConfig
from core.data.collect import collect
from core.data.datasets import LatentEpisodes, load_frames
from core.data.episodes import episode_path, list_episodes, read_episode, split_episodes
from core.data.policies import RandomExplorationPolicy
from core.envs.car_racing import preprocess_frames
from core.errors import ConfigError, EpisodeError


def test_collected_episodes_are_real_and_consistent(real_episodes: Path) -> None:
    files = list_episodes(real_episodes)
    assert [f.name for f in files] == [episode_path(real_episodes, s).name for s in (7, 8, 9)]
    ep = read_episode(files[0])
    assert ep.frames.shape == (61, 96, 96, 3) and ep.frames.dtype == np.uint8
    assert ep.actions.shape == (60, 3) and ep.rewards.shape == (60,)
    assert ep.seed == 7 and ep.policy == "random"
    assert ep.truncated[-1] and not ep.terminated.any()
    # a real track: green grass and grey road are both on screen, frames change as the car moves
    assert ep.frames[-1, :84, :, 1].mean() > 100
    assert np.abs(ep.frames[-1].astype(int) - ep.frames[30].astype(int)).mean() > 1.0
    assert np.all(ep.actions[:, 0] >= -1) and np.all(ep.actions[:, 1:] >= 0)


def test_collect_resumes_and_appends(real_episodes: Path, tmp_path: Path) -> None:
    # the fixture's seeds 7..9 already exist: nothing new
    assert collect(CollectConfig(out_dir=real_episodes, episodes=3, max_steps=60, workers=1, seed=7)) == []
    # same seed gives the same episode
    out = collect(CollectConfig(out_dir=tmp_path, episodes=1, max_steps=60, workers=1, seed=7))
    assert len(out) == 1
    a, b = read_episode(out[0].path), read_episode(episode_path(real_episodes, 7))
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.frames, b.frames)


def test_truncated_episode_file_gives_clear_error(real_episodes: Path, tmp_path: Path) -> None:
    src = episode_path(real_episodes, 7)
    bad = tmp_path / "ep_0000000001.npz"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(EpisodeError, match="corrupt or truncated"):
        read_episode(bad)
    # a resumed collection rewrites the broken file instead of trusting it
    collect(CollectConfig(out_dir=tmp_path, episodes=1, max_steps=20, workers=1, seed=1))
    assert read_episode(bad).steps == 20


def test_empty_dataset_dir_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="no episode files"):
        list_episodes(tmp_path)
    with pytest.raises(EpisodeError, match="not found"):
        list_episodes(tmp_path / "missing")


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="episodes"):
        CollectConfig(episodes=0)
    with pytest.raises(ConfigError, match="workers"):
        CollectConfig(workers=0)


def test_random_policy_holds_actions_and_prefers_gas() -> None:
    p = RandomExplorationPolicy()
    p.reset(3)
    actions = np.stack([p.act(np.zeros((96, 96, 3), np.uint8)) for _ in range(2000)])
    changes = (np.abs(np.diff(actions, axis=0)).sum(1) > 0).sum()
    assert changes < 600  # held for several steps on average
    assert (actions[:, 1] > 0).mean() > 0.6  # biased to gas
    assert ((actions[:, 1] > 0) & (actions[:, 2] > 0)).sum() == 0


def test_preprocess_crops_hud_and_resizes() -> None:
    frame = np.zeros((96, 96, 3), np.uint8)
    frame[84:] = 255  # HUD rows
    out = preprocess_frames(frame, 64)
    assert out.shape == (3, 64, 64) and out.max() == 0
    assert preprocess_frames(np.stack([frame] * 2), 96).shape == (2, 3, 96, 96)
    with pytest.raises(ValueError):
        preprocess_frames(np.zeros((64, 64, 3), np.uint8), 64)


def test_frame_dataset_and_split(real_episodes: Path) -> None:
    files = list_episodes(real_episodes)
    train, val = split_episodes(files, 0.34, seed=0)
    assert len(val) == 1 and len(train) == 2 and not set(train) & set(val)
    frames = load_frames(train, 64, stride=2)
    assert frames.shape == (2 * 31, 3, 64, 64)


def test_latent_subset_keeps_whole_episodes_labels_and_identity(tmp_path: Path) -> None:
    """Episodes of lengths 3, 5 and 2 steps, each filled with its own index: a subset in another order holds
    exactly those episodes, step arrays one shorter than mu's, with their seeds and policy labels."""
    lengths = [3, 5, 2]
    mu = np.concatenate([np.full((n + 1, 4), i, np.float32) for i, n in enumerate(lengths)])
    steps = np.concatenate([np.full(n, i, np.float32) for i, n in enumerate(lengths)])
    latents = LatentEpisodes(
        mu=mu, logvar=-mu, actions=np.repeat(steps[:, None], 3, axis=1), rewards=steps, terminated=steps * 0,
        starts=np.concatenate([[0], np.cumsum(np.array(lengths) + 1)]), seeds=np.array([10, 11, 12]),
        vision_kind="dds_vae", vision_sha256="ab", policies=np.array(["random", "controller", "random"]),
    )  # fmt: skip
    sub = latents.subset([2, 1])
    assert sub.problem() is None and sub.n_episodes == 2
    assert sub.seeds.tolist() == [12, 11] and sub.policies.tolist() == ["random", "controller"]
    assert (sub.vision_kind, sub.vision_sha256) == ("dds_vae", "ab")
    for j, i in enumerate([2, 1]):
        ep = sub.episode(j)
        assert ep["mu"].shape == (lengths[i] + 1, 4) and (ep["mu"] == i).all() and (ep["logvar"] == -i).all()
        assert len(ep["action"]) == lengths[i] and (ep["reward"] == i).all() and (ep["action"] == i).all()
    mask = latents.subset(latents.policies == "random")
    assert mask.seeds.tolist() == [10, 12] and mask.policy_counts() == {"random": 2}
    back = LatentEpisodes.load(sub.save(tmp_path / "sub.npz"))
    assert np.array_equal(back.mu, sub.mu) and back.policies.tolist() == ["random", "controller"]
    for bad in ([3], [], np.array([True, False])):
        with pytest.raises(EpisodeError):
            latents.subset(bad)
