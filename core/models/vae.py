"""Ha's ConvVAE (Ha & Schmidhuber, 2018, "World Models", appendix A.1) on 64x64 RGB frames."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from core.errors import ConfigError


@dataclass(frozen=True)
class VAEConfig:
    """Shape and loss settings of the ConvVAE."""

    z_dim: int = 32
    """Latent size (Ha: 32)."""
    kl_tolerance: float = 0.5
    """Free bits: the KL term is clamped below at ``kl_tolerance * z_dim`` nats per frame (Ha: 0.5). 0 disables."""

    def __post_init__(self) -> None:
        if self.z_dim < 1:
            raise ConfigError(f"z_dim must be >= 1, got {self.z_dim}")
        if self.kl_tolerance < 0:
            raise ConfigError(f"kl_tolerance must be >= 0, got {self.kl_tolerance}")


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """Sample ``z = mu + exp(logvar / 2) * eps``, eps ~ N(0, I) (Kingma & Welling, 2014, eq. 10)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample and dimension, shape of ``mu`` (Kingma & Welling, app. B)."""
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())


def slowness(mu: Tensor, mu_later: Tensor) -> Tensor:
    """How far the latent moves between paired frames, against how far it spreads over the batch.

    ``sum_d mean_b (mu - mu_later)^2 / (2 * sum_d var_b)``, where ``var_b`` is the variance of dimension d over
    both halves: about 1 - the lag-autocorrelation of z weighted by each dimension's variance, so 0 for a z
    that does not move between the pairs and about 1 for unrelated frames. The slowness principle of slow
    feature analysis (Wiskott & Sejnowski, 2002, eq. 1-4, with the unit-variance constraint as the
    denominator); dividing by the spread keeps it from being met by shrinking z.

    Args:
        mu, mu_later: float32 (B, z_dim), row b of both from the same episode, ``mu_later`` some steps later.

    Returns:
        A scalar tensor, >= 0.
    """
    both = torch.cat([mu, mu_later])
    spread = both.var(dim=0, unbiased=False).sum().clamp_min(1e-8)
    return (mu - mu_later).pow(2).mean(0).sum() / (2 * spread)


class ConvVAE(nn.Module):
    """Convolutional VAE: 64x64x3 frame -> z (32) -> 64x64x3 frame. 4,348,547 parameters at z_dim 32.

    Encoder: 4 convs (32, 64, 128, 256 filters, kernel 4, stride 2, ReLU) -> 2x2x256 -> linear mu, logvar.
    Decoder: linear z -> 1024 (as 1x1x1024) -> transposed convs (128, 64, 32, 3 filters; kernels 5, 5, 6, 6;
    stride 2), ReLU between, sigmoid out.
    """

    kind = "conv_vae"
    input_size = 64

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        z = self.config.z_dim
        self.z_dim = z
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.fc_mu = nn.Linear(1024, z)
        self.fc_logvar = nn.Linear(1024, z)
        self.fc_decode = nn.Linear(z, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )  # fmt: skip

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Frames -> posterior parameters.

        Args:
            x: float32 (B, 3, 64, 64) in [0, 1].

        Returns:
            ``(mu, logvar)``, each float32 (B, z_dim).
        """
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, z_dim) -> frames float32 (B, 3, 64, 64) in [0, 1]."""
        h = self.fc_decode(z).view(-1, 1024, 1, 1)
        return self.decoder(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Frames (B, 3, 64, 64) -> ``(reconstruction, mu, logvar)``; z is sampled when training, mu otherwise."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Negative ELBO of a batch: summed squared error per frame + KL with free bits (Ha's recipe).

        Args:
            x: float32 (B, 3, 64, 64) in [0, 1].

        Returns:
            ``(loss, metrics)``; metrics hold ``recon`` (MSE per pixel value, in [0, 1]) and ``kl``
            (nats per frame, before the free-bits clamp).
        """
        recon, mu, logvar = self(x)
        recon = recon.float()
        sq = (recon - x).pow(2)
        recon_loss = sq.flatten(1).sum(1).mean()
        kl = gaussian_kl(mu.float(), logvar.float()).sum(1).mean()
        kl_floor = self.config.kl_tolerance * self.z_dim
        loss = recon_loss + torch.clamp(kl, min=kl_floor)
        return loss, {"recon": sq.mean().item(), "kl": kl.item()}
