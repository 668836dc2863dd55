"""The mean-frame baseline of the pixel error: the other episodes' average real frame, kept as sums only."""

from __future__ import annotations

import pytest
import torch

from core.metrics.mean_frame import MeanFrameBaseline


def test_two_flat_episodes_score_each_other() -> None:
    baseline = MeanFrameBaseline()
    baseline.episode(torch.full((5, 3, 4, 4), 0.2))
    baseline.add(10, torch.full((2, 3, 4, 4), 0.2))
    baseline.episode(torch.full((7, 3, 4, 4), 0.6))
    baseline.add(10, torch.full((3, 3, 4, 4), 0.6))
    baseline.add(30, torch.full((1, 3, 4, 4), 0.5))
    sums = baseline.sums()
    assert sums[10][1] == 5 and sums[10][0] / 5 == pytest.approx(0.16)  # 0.4 apart, whichever episode
    assert sums[30] == (pytest.approx(0.09), 1)  # 0.5 against episode 1's mean 0.2


def test_sums_match_the_mse_computed_frame_by_frame() -> None:
    gen = torch.Generator().manual_seed(0)
    episodes = [torch.rand(n, 3, 8, 8, generator=gen) for n in (20, 30, 25)]
    baseline, expected = MeanFrameBaseline(), []
    for e, frames in enumerate(episodes):
        baseline.episode(frames)
        compared = frames[[3, 9, 9, 15]]  # a window's frame repeats once per dream
        baseline.add(100, compared)
        others = torch.cat([f for j, f in enumerate(episodes) if j != e]).mean(0)
        expected += [float((others - r).pow(2).mean()) for r in compared]
    total, n = baseline.sums()[100]
    assert n == 12 and total / n == pytest.approx(sum(expected) / 12, rel=1e-6)  # float32 frames


def test_one_episode_is_scored_against_its_own_mean() -> None:
    frames = torch.rand(10, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    baseline = MeanFrameBaseline()
    baseline.episode(frames)
    baseline.add(1, frames[:4])
    total, n = baseline.sums()[1]
    assert total / n == pytest.approx(float((frames.mean(0) - frames[:4]).pow(2).mean()), rel=1e-6)


def test_bad_calls_say_what_is_wrong() -> None:
    baseline = MeanFrameBaseline()
    with pytest.raises(ValueError, match="before any episode"):
        baseline.add(1, torch.zeros(1, 3, 4, 4))
    baseline.episode(torch.zeros(3, 3, 4, 4))
    with pytest.raises(ValueError, match="differ"):
        baseline.add(1, torch.zeros(1, 3, 8, 8))


def test_the_report_gives_the_dream_over_both_baselines() -> None:
    from core.divergence_table import format_table

    metrics = {"divergence/pixel_mse_dream@30": 0.006, "divergence/pixel_mse_copy@30": 0.010,
               "divergence/pixel_mse_vision@30": 0.002, "divergence/pixel_mse_mean@30": 0.0075,
               "divergence/off_manifold_share": 0.0, "divergence/windows": 2.0, "divergence/dreams": 8.0}  # fmt: skip
    header, row = format_table(metrics, (30,)).splitlines()[:2]
    assert header.split()[-2:] == ["dream/copy", "dream/mean"]
    assert row.split()[-2:] == ["0.60", "0.80"]
