"""Mixture density outputs (Bishop, 1994; Graves, 2013, sec. 4): the NLL of a target under K Gaussians per latent
dimension (or one joint mixture over the vector), and sampling at a temperature (Ha & Schmidhuber, 2018, sec. 4)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 5.0
"""Bounds of the predicted component log standard deviations (keeps the NLL finite)."""


def normal_to_uniform(x: Tensor) -> Tensor:
    """Standard normal noise -> Uniform(0, 1) through the normal CDF, ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``."""
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def mdn_nll(log_pi: Tensor, mu: Tensor, log_sigma: Tensor, target: Tensor, joint: bool = False) -> Tensor:
    """Negative log-likelihood of ``target`` under the Gaussian mixtures, via log-sum-exp.

    Per dimension: ``-log sum_k pi_k N(target_d; mu_kd, sigma_kd^2)`` (Bishop, 1994, eq. 29; Ha & Schmidhuber,
    2018, app. A.2). Joint (``joint=True``): ``-log sum_k pi_k prod_d N(target_d; mu_kd, sigma_kd^2)`` (Bishop,
    1994, eq. 22 and 29, diagonal covariance), spread evenly over the D dimensions so both read in nats per
    dimension and their means compare.

    Args:
        log_pi, mu, log_sigma: float (..., D, K); with ``joint`` the weights are read from ``log_pi[..., 0, :]``.
        target: float (..., D).
        joint: one mixture over the vector instead of one per dimension.

    Returns:
        float (..., D): the NLL per dimension, in nats.
    """
    t = target.unsqueeze(-1)
    log_prob = -0.5 * ((t - mu) * torch.exp(-log_sigma)).pow(2) - log_sigma - LOG_SQRT_2PI
    if not joint:
        return -torch.logsumexp(log_pi + log_prob, dim=-1)
    d = target.shape[-1]
    total = -torch.logsumexp(log_pi[..., 0, :] + log_prob.sum(dim=-2), dim=-1)  # (...)
    return (total / d).unsqueeze(-1).expand(target.shape)


def sample_mdn_with_noise(
    log_pi: Tensor, mu: Tensor, log_sigma: Tensor, tau: float, noise: Tensor, joint: bool = False
) -> Tensor:
    """Sample z_{t+1} from the mixtures at temperature ``tau``, given standard normal noise.

    As in Ha's code (Ha & Schmidhuber, 2018, sec. 4.3): the mixture logits are divided by ``tau`` before the
    softmax and the Gaussian noise is scaled by ``sqrt(tau)``. The component is drawn by inverting the
    categorical CDF with one uniform per dimension, ``u = Phi(noise[..., 0])``; ``noise[..., 1]`` is the
    Gaussian noise. ``tau == 0`` picks the most likely component's mean (deterministic, mode seeking). A joint
    mixture (``joint``; its ``log_pi`` rows are equal) draws one component for the whole vector, from the first
    dimension's uniform.

    Args:
        log_pi, mu, log_sigma: float32 (..., D, K).
        tau: temperature >= 0.
        noise: float32 (..., D, 2), independent standard normal.
        joint: one component for all D dimensions.

    Returns:
        float32 (..., D).

    Raises:
        ValueError: ``tau`` < 0.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got {tau}")
    if tau == 0:
        k = log_pi.argmax(dim=-1, keepdim=True)
        return mu.gather(-1, k).squeeze(-1)
    cdf = torch.softmax(log_pi / tau, dim=-1).cumsum(dim=-1)
    u = normal_to_uniform(noise[..., 0:1])
    if joint:
        u = u[..., :1, :].expand_as(u)
    k = (u > cdf).sum(dim=-1, keepdim=True).clamp_(max=log_pi.shape[-1] - 1)
    mu_k = mu.gather(-1, k).squeeze(-1)
    sigma_k = log_sigma.gather(-1, k).squeeze(-1).exp()
    return mu_k + sigma_k * noise[..., 1] * math.sqrt(tau)


def sample_mdn(
    log_pi: Tensor,
    mu: Tensor,
    log_sigma: Tensor,
    tau: float,
    generator: torch.Generator | None = None,
    joint: bool = False,
) -> Tensor:
    """Sample z_{t+1} at temperature ``tau`` (see :func:`sample_mdn_with_noise`), drawing the noise here.

    Args:
        log_pi, mu, log_sigma: float32 (..., D, K); tau >= 0; generator: optional torch RNG; joint: one
            component for the whole vector (a joint mixture).

    Returns:
        float32 (..., D).
    """
    noise = torch.randn((*mu.shape[:-1], 2), generator=generator, dtype=mu.dtype, device=mu.device)
    return sample_mdn_with_noise(log_pi, mu, log_sigma, tau, noise, joint)


def mixture_mean(log_pi: Tensor, mu: Tensor) -> Tensor:
    """Expected value of each per-dimension mixture: ``sum_k pi_k mu_k``, (..., D, K) -> (..., D)."""
    return (log_pi.exp() * mu).sum(-1)
