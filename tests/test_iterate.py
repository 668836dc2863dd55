"""The iterate stage: rounds of collect -> encode -> M (several draws) -> C in the dream, on a tiny real run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.checkpoint import load_model
from core.config import MemoryTrainConfig
from core.data.datasets import LatentEpisodes
from core.data.episodes import list_episodes, read_episode
from core.errors import ConfigError
from core.train.iterate import IterateConfig, iterate
from tests.controller_world import H, controller_checkpoint, dream_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_iterate_runs_a_round(world: SimpleNamespace, real_episodes: Path, tmp_path: Path) -> None:
    from core.data.episodes import list_episodes, read_episode
    from core.train.iterate import format_rounds

    start = controller_checkpoint(world, tmp_path / "start.safetensors", H)
    config = IterateConfig(
        train_controller=dream_config(world, tmp_path / "unused.safetensors", generations=1, population=4, rollouts=1,
                                 max_steps=25),
        train_memory=MemoryTrainConfig(epochs=1, seq_len=10, batch_size=4, hidden_dim=H, n_gaussians=2),
        start_controller=start, out_dir=tmp_path / "iterate", rounds=1, episodes=2, collect_seed=1000,
        excursion_prob=0.05, check_data_dirs=(real_episodes,), check_horizons=(5,), collect_max_steps=40,
        memory_draws=2, controller_from_start=True, dream_starts=world.latents, check_tau=0.5, check_samples=1,
        ensemble_draws=True, ensemble_penalty=1.0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="no latent file"):
        iterate(dataclasses.replace(config, dream_starts=tmp_path / "none.npz"))
    result = iterate(config)
    round_dir = tmp_path / "iterate" / "round_1"
    # episodes as long as collect_max_steps, not the dream horizon (train_controller.max_steps 25)
    assert {len(read_episode(f, frames=False).actions) for f in list_episodes(round_dir / "episodes")} == {40}
    assert not result.cancelled and result.checkpoint == round_dir / "controller.safetensors"
    assert {read_episode(f, frames=False).policy for f in list_episodes(round_dir / "episodes")} == {"controller"}
    merged = LatentEpisodes.load(round_dir / "latents.npz")
    assert merged.n_episodes == 3 + 2 and sorted(merged.seeds[-2:].tolist()) == [1000, 1001]
    assert merged.policies.tolist() == ["random"] * 3 + ["controller"] * 2
    record = json.loads((round_dir / "round.json").read_text())
    tracked = record["metrics"][f"check/{real_episodes.name}/road_tracked@5"]
    assert 0.0 <= tracked <= 1.0 and f"{real_episodes.name[:14]} @5" in format_rounds(result.history)
    assert load_model(result.checkpoint, "controller").checkpoint_extra["memory"] == str(  # type: ignore[attr-defined]
        round_dir / "memory.safetensors"
    )
    assert "iterate/collect_return" in result.metrics
    # two draws of M (seeds 0 and 1), each checked; the round kept the better one's bytes and its figures
    draws = record["memory_draws"]
    assert [d["seed"] for d in draws] == [0, 1] and all(f"check/{real_episodes.name}/road_tracked@5" in d["metrics"]
                                                         for d in draws)  # fmt: skip
    best = max(draws, key=lambda d: tuple(d["score"]))
    assert (round_dir / "memory.safetensors").read_bytes() == Path(best["memory"]).read_bytes()
    assert record["metrics"]["iterate/memory_seed"] == best["seed"] and tracked == best["metrics"][
        f"check/{real_episodes.name}/road_tracked@5"]  # fmt: skip
    assert Path(draws[0]["memory"]).read_bytes() != Path(draws[1]["memory"]).read_bytes()
    assert "M seed" in format_rounds(result.history)
    checked = draws[0]["metrics"]  # one dream per window (check_samples)
    assert checked[f"check/{real_episodes.name}/dreams"] == checked[f"check/{real_episodes.name}/windows"] > 0
    # C trained from zero (controller_from_start, no init_controller), not from the start controller
    extra = load_model(result.checkpoint, "controller").checkpoint_extra  # type: ignore[attr-defined]
    trained = extra["train_config"]
    assert trained["init_controller"] == "None" and trained["latents"] == str(world.latents)  # dream_starts
    # ... in the ensemble of both draws: the kept one (whose h it reads) and the other, with the penalty
    other = next(d["memory"] for d in draws if d["seed"] != best["seed"])
    assert trained["memory"] == str(round_dir / "memory.safetensors") and extra["dream_ensemble"] == [other]
    assert float(trained["disagreement_penalty"]) == 1.0
    assert iterate(config).checkpoint == result.checkpoint  # a rerun skips the finished round


def test_iterate_refuses_draws_of_m_it_cannot_rank(world: SimpleNamespace, tmp_path: Path) -> None:
    base = dream_config(world, tmp_path / "c.safetensors")
    with pytest.raises(ConfigError, match="memory_draws > 1 keeps the draw with the best dream checks"):
        IterateConfig(train_controller=base, memory_draws=2)
    with pytest.raises(ConfigError, match="ensemble_draws trains C in the ensemble of the round's M draws"):
        IterateConfig(train_controller=base, ensemble_draws=True)
    with pytest.raises(ConfigError, match="ensemble_penalty must be >= 0 and needs ensemble_draws"):
        IterateConfig(train_controller=base, ensemble_penalty=1.0)
    with pytest.raises(ConfigError, match="memory_draws must be >= 1"):
        IterateConfig(train_controller=base, memory_draws=0)
    with pytest.raises(ConfigError, match="check_tau must be >= 0 and check_samples >= 1"):
        IterateConfig(train_controller=base, check_samples=0)


@pytest.mark.slow
def test_iterate_can_keep_m_and_add_the_controllers_states_to_the_dream_starts(
    world: SimpleNamespace, tmp_path: Path
) -> None:
    start = controller_checkpoint(world, tmp_path / "start.safetensors", H)
    base = dream_config(world, tmp_path / "unused.safetensors", generations=1, population=4, rollouts=1, max_steps=25)
    config = IterateConfig(train_controller=base, start_controller=start, out_dir=tmp_path / "iterate", rounds=2,
                           episodes=2, collect_seed=2000, collect_max_steps=30, keep_memory=True)  # fmt: skip
    memory_bytes = Path(base.memory).read_bytes()
    result = iterate(config)
    assert not result.cancelled
    for r, previous in ((1, start), (2, tmp_path / "iterate" / "round_1" / "controller.safetensors")):
        round_dir = tmp_path / "iterate" / f"round_{r}"
        assert not (round_dir / "memory.safetensors").exists()  # no M trained
        starts = LatentEpisodes.load(round_dir / "latents.npz")  # the start file's 3 episodes, then 2 per round
        assert starts.n_episodes == 3 + 2 * r and starts.seeds[3:].tolist() == list(range(2000, 2000 + 2 * r))
        extra = load_model(round_dir / "controller.safetensors", "controller").checkpoint_extra  # type: ignore[attr-defined]
        trained = extra["train_config"]
        assert trained["memory"] == str(base.memory) and trained["latents"] == str(round_dir / "latents.npz")
        assert trained["init_controller"] == str(previous)  # C goes on from the previous round's
        record = json.loads((round_dir / "round.json").read_text())
        assert record["memory"] == str(base.memory) and record["memory_draws"] == []
    assert Path(base.memory).read_bytes() == memory_bytes
    # a round whose episodes are already on disk (an interrupted run, or episodes put there) reports their return
    episodes = tmp_path / "iterate" / "round_1" / "episodes"
    returns = [float(read_episode(f, frames=False).rewards.sum()) for f in list_episodes(episodes)]
    again = tmp_path / "again"
    shutil.copytree(episodes, again / "round_1" / "episodes")
    rerun = iterate(dataclasses.replace(config, out_dir=again, rounds=1))
    assert rerun.metrics["iterate/collect_return"] == pytest.approx(np.mean(returns), rel=1e-5)
    with pytest.raises(ConfigError, match="keep_memory trains no M"):
        IterateConfig(train_controller=base, keep_memory=True, memory_draws=2, check_data_dirs=(tmp_path,))
    with pytest.raises(ConfigError, match="keep_memory trains no M"):  # nothing new to check in a kept M
        IterateConfig(train_controller=base, keep_memory=True, check_data_dirs=(tmp_path,))
