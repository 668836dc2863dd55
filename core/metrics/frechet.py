"""Frechet distances between feature distributions: FID over frames, FVD over clips.

The Frechet (2-Wasserstein) distance between two Gaussians fitted to features (Heusel et al., 2017, "GANs
Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", eq. 6; Dowson & Landau, 1982):

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

FID takes the features from Inception-v3's 2048-d pool layer (Szegedy et al., 2016); FVD (Unterthiner et
al., 2018, "Towards Accurate Generative Models of Video") from an I3D network (Carreira & Zisserman, 2017) on
whole clips. Feature extractors are pluggable; the standard networks' weights are not shipped and cannot be
downloaded here, so the loaders take a user-given file and fail with one clear line when it is absent.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from core.errors import DreamExplorerError


class FeatureExtractor(Protocol):
    """Frames uint8 (N, H, W, 3) -> features float (N, D); one row per frame."""

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


class ClipFeatureExtractor(Protocol):
    """Clips uint8 (N, T, H, W, 3) -> features float (N, D); one row per clip."""

    def __call__(self, clips: np.ndarray) -> np.ndarray: ...


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues below 0 set to 0)."""
    eigvals, eigvecs = np.linalg.eigh(matrix)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al., 2017, eq. 6).

    ``Tr((sigma1 sigma2)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix ``sigma1^(1/2) sigma2 sigma1^(1/2)``, which has the same spectrum as
    ``sigma1 sigma2``; both square roots use symmetric eigendecompositions in float64, so singular
    covariances (fewer samples than dimensions) are fine. Round-off below 0 is returned as 0.

    Args:
        mu1, mu2: means, shape (D,).
        sigma1, sigma2: covariances, shape (D, D), symmetric PSD.

    Returns:
        The distance in squared feature units, >= 0 (FID and FVD report this value as is).

    Raises:
        ValueError: the shapes do not match.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        shapes = f"mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}"
        raise ValueError(f"shapes do not match: {shapes}")
    sigma1 = 0.5 * (sigma1 + sigma1.T)
    sigma2 = 0.5 * (sigma2 + sigma2.T)
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(0.5 * (middle + middle.T)), 0.0, None)).sum()
    diff = mu1 - mu2
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return max(float(distance), 0.0)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of feature rows.

    Args:
        features: float (N, D), one row per frame or clip, N >= 2.

    Returns:
        ``(mu, sigma)``: float64 (D,) and (D, D).

    Raises:
        DreamExplorerError: fewer than 2 rows.
        ValueError: ``features`` is not 2-D.
    """
    features = np.asarray(features, np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if features.shape[0] < 2:
        raise DreamExplorerError(f"a Frechet distance needs >= 2 samples per side, got {features.shape[0]}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _batched_features(items: np.ndarray, extractor: Callable[[np.ndarray], np.ndarray], batch_size: int) -> np.ndarray:
    """Run ``extractor`` over ``items`` (N, ...) in batches along the first axis; rows concatenated."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [np.asarray(extractor(items[i : i + batch_size])) for i in range(0, len(items), batch_size)]
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 0))


def _frechet_between(
    real: np.ndarray, fake: np.ndarray, extractor: Callable[[np.ndarray], np.ndarray], batch_size: int
) -> float:
    mu1, sigma1 = gaussian_stats(_batched_features(real, extractor, batch_size))
    mu2, sigma2 = gaussian_stats(_batched_features(fake, extractor, batch_size))
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def fid(real_frames: np.ndarray, fake_frames: np.ndarray, extractor: FeatureExtractor, batch_size: int = 64) -> float:
    """Frechet distance between the feature distributions of two frame sets (FID with an Inception extractor).

    Args:
        real_frames, fake_frames: uint8 (N, H, W, 3), N >= 2 each (FID is biased for small N; papers use
            10,000 or more frames).
        extractor: e.g. :func:`load_inception_extractor`; any :class:`FeatureExtractor` gives a Frechet
            distance in its own feature space, which is then not FID.
        batch_size: frames per extractor call.

    Raises:
        DreamExplorerError: fewer than 2 frames on a side.
    """
    return _frechet_between(real_frames, fake_frames, extractor, batch_size)


def fvd(real_clips: np.ndarray, fake_clips: np.ndarray, extractor: ClipFeatureExtractor, batch_size: int = 8) -> float:
    """Frechet distance between the feature distributions of two clip sets (FVD with an I3D extractor).

    Args:
        real_clips, fake_clips: uint8 (N, T, H, W, 3), N >= 2 each (Unterthiner et al. use 16-frame clips).
        extractor: e.g. :func:`load_i3d_extractor`; any :class:`ClipFeatureExtractor`.
        batch_size: clips per extractor call.

    Raises:
        DreamExplorerError: fewer than 2 clips on a side.
    """
    return _frechet_between(real_clips, fake_clips, extractor, batch_size)


def _load_torchscript(path: str | Path, missing_message: str) -> torch.jit.ScriptModule:
    path = Path(path)
    if not path.is_file():
        raise DreamExplorerError(missing_message.format(path=path))
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated but is the format these nets ship in
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as exc:
        raise DreamExplorerError(f"{path} is not a TorchScript network file ({type(exc).__name__})") from exc


class TorchScriptInception:
    """FID's Inception-v3 as NVIDIA's TorchScript export (``inception-2015-12-05.pt``, the TF-FID weights).

    Frames uint8 (N, H, W, 3) -> pool3 features float64 (N, 2048). The network resizes to 299x299 itself
    and takes float NCHW in [0, 255].
    """

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        self.net = net

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            features = self.net(x, return_features=True)
        return features.reshape(len(frames), -1).double().numpy()


class TorchScriptI3D:
    """FVD's I3D (Kinetics-400) as the StyleGAN-V TorchScript export (``i3d_torchscript.pt``).

    Clips uint8 (N, T, H, W, 3) -> logits-layer features float64 (N, 400). The network rescales [0, 255]
    to [-1, 1] and resizes to 224x224 itself (``rescale=True, resize=True``).
    """

    def __init__(self, net: torch.jit.ScriptModule) -> None:
        self.net = net

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).float()
        with torch.inference_mode():
            features = self.net(x, rescale=True, resize=True, return_features=True)
        return features.reshape(len(clips), -1).double().numpy()


def load_inception_extractor(path: str | Path) -> TorchScriptInception:
    """Load FID's Inception-v3 from a user-given TorchScript file (no torchvision needed).

    The expected file is NVIDIA's ``inception-2015-12-05.pt`` (StyleGAN2-ADA metrics; clean-fid uses the
    same), called as ``net(x, return_features=True)`` with x float (N, 3, H, W) in [0, 255].

    Raises:
        DreamExplorerError: the file is absent ("Inception weights not found at <path>; FID/FVD need them
            (they cannot be downloaded here)") or is not a TorchScript archive.
    """
    message = "Inception weights not found at {path}; FID/FVD need them (they cannot be downloaded here)"
    return TorchScriptInception(_load_torchscript(path, message))


def load_i3d_extractor(path: str | Path) -> TorchScriptI3D:
    """Load FVD's I3D from a user-given TorchScript file (StyleGAN-V's ``i3d_torchscript.pt``).

    Raises:
        DreamExplorerError: the file is absent ("I3D weights not found at <path>; FVD needs them (they
            cannot be downloaded here)") or is not a TorchScript archive.
    """
    message = "I3D weights not found at {path}; FVD needs them (they cannot be downloaded here)"
    return TorchScriptI3D(_load_torchscript(path, message))
