"""Frechet distance against closed forms; FID/FVD plumbing and the absent-weights error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DreamExplorerError
from core.metrics.frechet import (
    fid,
    frechet_distance,
    fvd,
    gaussian_stats,
    load_i3d_extractor,
    load_inception_extractor,
)


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_diagonal_gaussians_match_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 2.0, size=5), rng.uniform(0.1, 2.0, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_one_dimensional_gaussians() -> None:
    # d^2 = (m1 - m2)^2 + (std1 - std2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[1.0]])) == (
        pytest.approx(9.0 + 1.0)
    )


def test_full_covariances_match_the_trace_of_the_product_root() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = _random_cov(rng, 6), _random_cov(rng, 6)
    # Tr((s1 s2)^(1/2)) = sum of square roots of the (real, positive) eigenvalues of s1 s2
    tr_root = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_root
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_identical_stats_give_zero_and_the_distance_is_symmetric() -> None:
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_singular_covariances_from_few_samples() -> None:
    rng = np.random.default_rng(3)
    mu1, s1 = gaussian_stats(rng.normal(size=(4, 10)))  # rank 3 covariance
    mu2, s2 = gaussian_stats(rng.normal(size=(4, 10)) + 1.0)
    d = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(d) and d > 0
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_gaussian_stats_and_bad_inputs() -> None:
    features = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_stats(features)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(features.T))
    with pytest.raises(DreamExplorerError):
        gaussian_stats(features[:1])
    with pytest.raises(ValueError):
        frechet_distance(mu, sigma, np.zeros(3), np.eye(3))


def _mean_colour(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1, 3).mean(axis=1)


def test_fid_and_fvd_with_pluggable_extractors() -> None:
    rng = np.random.default_rng(4)
    real = rng.integers(0, 256, size=(20, 8, 8, 3), dtype=np.uint8)
    assert fid(real, real.copy(), _mean_colour, batch_size=7) == pytest.approx(0.0, abs=1e-9)
    assert fid(real, real // 2, _mean_colour) > 100.0

    clips = rng.integers(0, 256, size=(6, 4, 8, 8, 3), dtype=np.uint8)
    assert fvd(clips, clips.copy(), _mean_colour, batch_size=4) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(DreamExplorerError):
        fvd(clips[:1], clips, _mean_colour)


def test_absent_weights_give_one_plain_line(tmp_path: Path) -> None:
    path = tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(DreamExplorerError) as info:
        load_inception_extractor(path)
    assert str(info.value) == (
        f"Inception weights not found at {path}; FID/FVD need them (they cannot be downloaded here)"
    )
    with pytest.raises(DreamExplorerError, match="I3D weights not found"):
        load_i3d_extractor(tmp_path / "i3d_torchscript.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a network")
    with pytest.raises(DreamExplorerError, match="not a TorchScript"):
        load_inception_extractor(garbage)


class _FakeInception(torch.nn.Module):
    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.mean(dim=(2, 3)) / 255.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_inception_wrapper_feeds_nchw_0_255(tmp_path: Path) -> None:
    path = tmp_path / "fake.pt"
    torch.jit.script(_FakeInception()).save(str(path))
    extractor = load_inception_extractor(path)
    frames = np.zeros((2, 5, 5, 3), dtype=np.uint8)
    frames[..., 0] = 255
    np.testing.assert_allclose(extractor(frames), [[1.0, 0.0, 0.0]] * 2)
