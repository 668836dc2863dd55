"""DDS+VAE: Dynamic Data Selection in front of a hierarchical autoencoder with an internal perceptual loss.

The seed work ("Perceptual Latent Representations: Improving Visual Fidelity and Autonomous Control in World
Models", B. Corcuera, Universidade da Coruna; seed README ``000_5b46920e2e15b09c``), read off its code:

    x (3x96x96) -> UNet1 scores u -> DDS: keep the top-k gates, gated = x * mask * g
      -> downscaling encoder -> mini mask (4x16x16) -> mini-VAE encoder -> mu, logvar (32)
    z (32) -> mini-VAE decoder -> mini mask -> upscaling decoder (3x96x96) -> UNet2, sigmoid -> frame

Phase 1 trains UNet1, the scaling nets and UNet2 end to end with the mini-VAE bypassed (MSE + L1). Phase 2
freezes them and trains a fresh mini-VAE on the frozen mini masks with the internal perceptual loss (MSE
between the frozen upscaling decoder's activations on the predicted and on the target mini mask) plus a
free-bits KL. 4,039,089 parameters at the default config.

The DDS gate is the binary concrete relaxation (Maddison et al., 2017, "The Concrete Distribution", eq. 12;
Jang et al., 2017, "Categorical Reparameterization with Gumbel-Softmax") as used for L0 gates by Louizos et
al., 2018 ("Learning Sparse Neural Networks through L0 Regularization", eq. 10), with the stretch interval
left at [0, 1], so the hard-concrete clamp is the identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import ConfigError
from core.models.dds_blocks import (  # noqa: F401  (re-exported)
    BASE_CHANNELS,
    IMAGE_SHAPE,
    MINI_MASK_SHAPE,
    DownscalingEncoder,
    MiniVAE,
    UNet,
    UNetUp,
    UpscalingDecoder,
    conv_block,
)
from core.models.vae import gaussian_kl, reparameterize, slowness

SCORE_OFFSET = 1.0
"""Added to the UNet1 scores before gating, as in the seed's DDS: at init the gates sit near sigmoid(1.5)."""
UNIFORM_EPS = 1e-6
"""U ~ Uniform(0, 1) is clamped to [eps, 1 - eps] before the logit."""
EVAL_GATES = ("deterministic", "frozen-noise")
"""The DDS's evaluation-mode gate choices (:attr:`DDSVAEConfig.eval_gates`)."""
RECON_METRIC_FRAMES = 8
"""Phase-2 training estimates the pixel-MSE metric on this many frames of the batch (UNet2 is costly)."""


@dataclass(frozen=True)
class DDSVAEConfig:
    """Shape, gate and loss settings of the DDS+VAE. The training phase is not stored here (the trainer
    sets it with :meth:`DDSVAE.set_phase`)."""

    z_dim: int = 32
    """Latent size of the mini-VAE."""
    keep_fraction: float = 0.03
    """Fraction of the 3*96*96 input values the DDS keeps: k = int(keep_fraction * 27648) (0.03 -> 829)."""
    gate_alpha: float = 1.0
    """Scale of the logistic noise logit(U) in the training gate (alpha)."""
    gate_temperature: float = 2 / 3
    """Temperature T of the concrete gate sigmoid((alpha * logit(U) + u) / T)."""
    explore_prob: float = 0.1
    """Probability delta, per sample and in training only, that the DDS mask is all ones (exploration)."""
    free_bits: float = 0.01
    """Phase 2: each sample's per-dimension KL is clamped below at this many nats."""
    l1_weight: float = 0.01
    """Phase 1: weight of the L1 term next to the pixel MSE."""
    kl_weight: float = 1.0
    """Phase 2: weight of the free-bits KL next to the internal perceptual loss."""
    temporal_weight: float = 0.0
    """Phase 2, not in the seed work: weight of :func:`core.models.vae.slowness` of mu between frames some steps
    apart in one episode (0: the seed's loss). A z that moves with the scene rather than with each frame's
    selection is easier for M to predict (docs/history.md, session 21)."""
    eval_gates: str = "deterministic"
    """How the DDS gates in evaluation: ``"deterministic"`` (the seed work: ``sigmoid(u / T)``, i.e. the noise
    at its median U = 1/2) or ``"frozen-noise"`` (one fixed draw of the training noise ``logit(U)``, from
    ``eval_noise_seed``, used for every frame). Both are deterministic. Frozen noise keeps the evaluation masks
    inside the distribution the decoder was trained on; see :class:`DDS`."""
    eval_noise_seed: int = 0
    """Seed of the frozen noise draw (``eval_gates="frozen-noise"`` only)."""
    mask_input: bool = False
    """Not in the seed work. Feed the downscaling encoder the gates ``mask * g`` as three more channels next
    to ``x * mask * g``, so a kept black value (the void beyond the map's edge, x = 0) differs from a dropped
    one, and the gate of a black value gets a gradient. Off: the seed's encoder, which sees only the product."""

    def __post_init__(self) -> None:
        if self.z_dim < 1:
            raise ConfigError(f"z_dim must be >= 1, got {self.z_dim}")
        if not 0.0 < self.keep_fraction <= 1.0 or self.keep_count < 1:
            raise ConfigError(f"keep_fraction must be in (0, 1] and keep >= 1 value: {self.keep_fraction}")
        if self.gate_alpha < 0:
            raise ConfigError(f"gate_alpha must be >= 0, got {self.gate_alpha}")
        if self.gate_temperature <= 0:
            raise ConfigError(f"gate_temperature must be > 0, got {self.gate_temperature}")
        if not 0.0 <= self.explore_prob <= 1.0:
            raise ConfigError(f"explore_prob must be in [0, 1], got {self.explore_prob}")
        if self.eval_gates not in EVAL_GATES:
            raise ConfigError(f"eval_gates must be one of {', '.join(EVAL_GATES)}, got {self.eval_gates!r}")
        for name in ("free_bits", "l1_weight", "kl_weight", "temporal_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def keep_count(self) -> int:
        """k, the number of input values the DDS keeps per sample."""
        return int(self.keep_fraction * IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2])


class DDSMaskOutput(NamedTuple):
    """What the DDS selects from a batch of frames.

    mask: float32 (B, 3, 96, 96), exactly 0 or 1; k ones per sample (all ones for exploring training samples).
    gated: float32 (B, 3, 96, 96) in [0, 1], ``x * mask * g``: the kept input values scaled by their gates.
    mini_mask: float32 (B, 4, 16, 16) in (0, 1), the downscaling encoder's code of ``gated`` (and, with
    :attr:`DDSVAEConfig.mask_input`, of ``mask * g``).
    """

    mask: Tensor
    gated: Tensor
    mini_mask: Tensor


class DDS(nn.Module):
    """Dynamic Data Selection: a top-k binary mask and concrete gates from per-value scores. No weights.

    Training: ``g = sigmoid((alpha * logit(U) + u) / T)``, U ~ Uniform(0, 1) drawn per value and call; the mask
    keeps the k largest noisy gates, and with probability ``explore_prob`` per sample the mask is all ones.
    Evaluation (deterministic either way), by ``config.eval_gates``:

    - ``"deterministic"`` (the seed work): ``g = sigmoid(u / T)``, the mask keeps the k largest scores.
    - ``"frozen-noise"``: as in training but with one fixed draw of U (seeded by ``config.eval_noise_seed``)
      shared by every frame, and no exploration. Why: when the learnt scores spread less than the noise
      (std of logit(U) is pi / sqrt(3) = 1.8; after a CPU-sized phase 1 the scores spread ~1), training masks
      are scattered over the frame, and the decoder learns to reconstruct from scattered samples; the
      noise-free top-k instead keeps one blob of the highest scores, which the decoder never saw. One frozen
      draw is a sample of the training distribution. Measured on 500 held-out frames, the same phase-1 weights
      (frame -> mini mask -> frame, MSE at 64x64): 0.0197 deterministic, 0.0026 frozen noise (seeds 0-4:
      0.00257-0.00270).

    ``u`` is the score plus :data:`SCORE_OFFSET`. Gradients flow through ``g``; the mask itself is a constant.
    """

    def __init__(self, config: DDSVAEConfig) -> None:
        super().__init__()
        self.keep_count = config.keep_count
        self.alpha = config.gate_alpha
        self.temperature = config.gate_temperature
        self.explore_prob = config.explore_prob
        frozen = None
        if config.eval_gates == "frozen-noise":
            g = torch.Generator().manual_seed(config.eval_noise_seed)
            u01 = torch.rand(1, IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2], generator=g)
            frozen = torch.logit(u01, eps=UNIFORM_EPS)
        self.frozen_noise: Tensor | None
        self.register_buffer("frozen_noise", frozen, persistent=False)  # rebuilt from the config on load

    def forward(self, scores: Tensor) -> tuple[Tensor, Tensor]:
        """Scores float (B, C, H, W) -> ``(mask, g)``, both (B, C, H, W); mask in {0, 1}, g in (0, 1)."""
        u = scores.flatten(1) + SCORE_OFFSET
        if self.training:
            noise = torch.logit(torch.rand_like(u), eps=UNIFORM_EPS)
            logits = (self.alpha * noise + u) / self.temperature
        elif self.frozen_noise is not None:
            logits = (self.alpha * self.frozen_noise.to(u.dtype) + u) / self.temperature
        else:
            logits = u / self.temperature
        gate = torch.sigmoid(logits)
        # top-k on the logits: same order as the gates, without ties where the sigmoid saturates
        keep = logits.detach().topk(self.keep_count, dim=1).indices
        mask = torch.zeros_like(u).scatter_(1, keep, 1.0)
        if self.training and self.explore_prob > 0:
            explore = torch.rand(u.shape[0], 1, device=u.device) < self.explore_prob
            mask = mask.masked_fill(explore, 1.0)
        return mask.view_as(scores), gate.view_as(scores)


class DDSVAE(nn.Module):
    """The DDS+VAE vision model: frames float32 (B, 3, 96, 96) in [0, 1] <-> z (B, z_dim).

    Parts: ``unet1`` (scores), ``dds`` (top-k mask and gates), ``downscaling`` (-> mini mask), ``mini_vae``,
    ``upscaling`` (mini mask -> 3x96x96), ``unet2`` (+ sigmoid -> frame). ``phase`` (1 or 2) selects what
    :meth:`forward` and :meth:`loss` do; change it with :meth:`set_phase` only.
    """

    kind = "dds_vae"
    input_size = 96

    def __init__(self, config: DDSVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or DDSVAEConfig()
        self.z_dim = self.config.z_dim
        self.phase = 1
        self.unet1 = UNet()
        self.dds = DDS(self.config)
        self.downscaling = DownscalingEncoder(in_ch=IMAGE_SHAPE[0] * (2 if self.config.mask_input else 1))
        self.mini_vae = MiniVAE(self.z_dim)
        self.upscaling = UpscalingDecoder()
        self.unet2 = UNet()

    def _phase1_parts(self) -> list[nn.Module]:
        return [self.unet1, self.dds, self.downscaling, self.upscaling, self.unet2]

    def set_phase(self, phase: int) -> None:
        """Switch the training phase.

        1: UNet1, the scaling nets and UNet2 are trainable and follow :meth:`train`/:meth:`eval`; the mini-VAE
        is bypassed by :meth:`forward` and :meth:`loss`.
        2: the mini-VAE is re-initialised (:meth:`MiniVAE.reset_parameters`); every other part gets
        ``requires_grad=False`` and stays in eval mode even under ``model.train()``, so its weights and
        BatchNorm statistics stay bit-identical and the DDS gates are deterministic. To resume a phase-2
        checkpoint, call ``set_phase(2)`` before ``load_state_dict``.

        Raises:
            ConfigError: ``phase`` is not 1 or 2.
        """
        if phase not in (1, 2):
            raise ConfigError(f"phase must be 1 or 2, got {phase}")
        self.phase = phase
        for part in self._phase1_parts():
            part.requires_grad_(phase == 1)
        if phase == 2:
            self.mini_vae.reset_parameters()
        self.train(self.training)

    def train(self, mode: bool = True) -> DDSVAE:
        """Set train/eval mode; in phase 2 only the mini-VAE follows ``mode``, frozen parts stay in eval."""
        super().train(mode)
        if self.phase == 2:
            for part in self._phase1_parts():
                part.train(False)
        return self

    def set_eval_gates(self, eval_gates: str, seed: int | None = None) -> None:
        """Choose how the DDS gates in evaluation (:attr:`DDSVAEConfig.eval_gates`); weights are untouched and
        the choice is stored with the config in the next checkpoint.

        Raises:
            ConfigError: an unknown ``eval_gates``.
        """
        seed = self.config.eval_noise_seed if seed is None else seed
        self.config = dataclasses.replace(self.config, eval_gates=eval_gates, eval_noise_seed=seed)
        alpha = self.dds.alpha
        self.dds = DDS(self.config)
        self.dds.alpha = alpha
        self.train(self.training)

    def mask(self, x: Tensor) -> DDSMaskOutput:
        """Run UNet1, the DDS and the downscaling encoder (in the current train/eval mode).

        Args:
            x: float32 (B, 3, 96, 96) in [0, 1].

        Returns:
            :class:`DDSMaskOutput` with the binary mask, the gated frame ``x * mask * g`` and the mini mask.
        """
        mask, gate = self.dds(self.unet1(x))
        gates = mask * gate
        gated = x * gates
        code_input = torch.cat([gated, gates], dim=1) if self.config.mask_input else gated
        return DDSMaskOutput(mask, gated, self.downscaling(code_input))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Frames -> posterior parameters via UNet1, the DDS, the downscaling and the mini-VAE encoders.

        Args:
            x: float32 (B, 3, 96, 96) in [0, 1].

        Returns:
            ``(mu, logvar)``, each float32 (B, z_dim).
        """
        mu, logvar, _ = self.encode_with_mask(x)
        return mu, logvar

    def encode_with_mask(self, x: Tensor) -> tuple[Tensor, Tensor, DDSMaskOutput]:
        """:meth:`encode` and :meth:`mask` in one pass (one UNet1 run): ``(mu, logvar, mask_output)``.

        Args:
            x: float32 (B, 3, 96, 96) in [0, 1].
        """
        selected = self.mask(x)
        mu, logvar = self.mini_vae.encode(selected.mini_mask)
        return mu, logvar, selected

    def _reconstruct(self, mini_mask: Tensor) -> Tensor:
        """Mini mask (B, 4, 16, 16) -> frame (B, 3, 96, 96) in (0, 1) via the upscaling decoder and UNet2."""
        return torch.sigmoid(self.unet2(self.upscaling(mini_mask)))

    def decode(self, z: Tensor) -> Tensor:
        """Latents float32 (B, z_dim) -> frames float32 (B, 3, 96, 96) in (0, 1)."""
        return self._reconstruct(self.mini_vae.decode(z))

    @torch.no_grad()
    def recalibrate_batchnorm(self, batches: Iterable[Tensor]) -> int:
        """Re-estimate every BatchNorm's running mean and variance on the evaluation-mode data flow.

        Training feeds the layers after the DDS gated frames made with noisy gates and, for 10% of the
        samples, all-ones exploration masks; evaluation feeds deterministic top-k gated frames, so the running
        statistics collected in training do not match what the layers see in evaluation (measured on held-out
        frames after phase 1: pixel MSE 0.0185 with the training statistics, 0.0122 with batch statistics).
        This runs the DDS in evaluation mode and the BatchNorm layers in training mode with a cumulative
        average (momentum None) over ``batches`` (frames float32 (B, 3, 96, 96) in [0, 1]) along the phase-1
        path (frame -> mini mask -> frame), the path phase 2's frozen decoder targets come from. Weights are
        untouched. The BatchNorm recalibration of Ioffe & Szegedy (2015, sec. 3.1: population statistics for
        inference). Returns the number of frames used.

        Raises:
            ValueError: ``batches`` is empty (the statistics are then left as they were).
        """
        was_training = self.training
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [bn.momentum for bn in norms]
        saved = [{k: v.clone() for k, v in bn.state_dict().items()} for bn in norms]
        nn.Module.train(self, False)
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        frames = 0
        try:
            for x in batches:
                self._reconstruct(self.mask(x).mini_mask)
                frames += x.shape[0]
        finally:
            for bn, momentum, state in zip(norms, momenta, saved, strict=True):
                bn.momentum = momentum
                if frames == 0:
                    bn.load_state_dict(state)
            self.train(was_training)
        if frames == 0:
            raise ValueError("recalibrate_batchnorm needs at least one batch of frames")
        return frames

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Frames float32 (B, 3, 96, 96) in [0, 1] -> ``(reconstruction, mu, logvar)``.

        Phase 1 bypasses the mini-VAE (frame -> mini mask -> frame); ``mu`` and ``logvar`` are then zeros
        (B, z_dim). Phase 2 encodes, samples z when training (mu otherwise) and decodes.
        """
        if self.phase == 1:
            zeros = x.new_zeros(x.shape[0], self.z_dim)
            return self._reconstruct(self.mask(x).mini_mask), zeros, zeros
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar) if self.training else mu
        return self.decode(z), mu, logvar

    def loss(self, x: Tensor, x_later: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of the current phase on a batch of frames (and, in phase 2, of ``x_later`` too).

        Phase 1: ``MSE + l1_weight * L1`` of the reconstruction vs ``x``. Metrics: ``recon`` (MSE per pixel
        value, in [0, 1]) and ``l1`` (mean absolute error per pixel value).
        Phase 2: internal perceptual loss (the mean, over the seven stage outputs of the frozen upscaling
        decoder, of the MSE between its activations on the predicted and on the target mini mask; target
        mini masks computed without gradient) + ``kl_weight`` * free-bits KL (per sample and dimension
        clamped below at ``free_bits``, then averaged). Metrics: ``perceptual``, ``kl`` (nats per frame
        summed over z, before the clamp) and ``recon`` (pixel MSE of the full decode vs ``x``, no gradient;
        in training mode on the first :data:`RECON_METRIC_FRAMES` frames only, which saves ~20% of a step).

        With ``x_later`` (phase 2): both batches' loss, plus ``temporal_weight`` * :func:`slowness` of their mu
        (metric ``slowness``).

        Args:
            x: float32 (B, 3, 96, 96) in [0, 1]. x_later: the same shape, row b from row b's episode, later.

        Returns:
            ``(loss, metrics)``: a scalar tensor and plain floats.

        Raises:
            ConfigError: ``x_later`` in phase 1.
        """
        if x_later is not None and self.phase == 1:
            raise ConfigError("paired frames (the temporal term) are for phase 2 only")
        if x_later is not None:
            x = torch.cat([x, x_later])
        if self.phase == 1:
            recon = self(x)[0].float()
            mse = F.mse_loss(recon, x)
            l1 = F.l1_loss(recon, x)
            return mse + self.config.l1_weight * l1, {"recon": mse.item(), "l1": l1.item()}

        with torch.no_grad():
            target_mini_mask = self.mask(x).mini_mask
            target = self.upscaling.activations(target_mini_mask)
        mu, logvar = self.mini_vae.encode(target_mini_mask)
        z = reparameterize(mu, logvar) if self.training else mu
        pred = self.upscaling.activations(self.mini_vae.decode(z))
        pairs = zip(pred, target, strict=True)
        perceptual = torch.stack([F.mse_loss(p.float(), t.float()) for p, t in pairs]).mean()
        kl = gaussian_kl(mu.float(), logvar.float())
        loss = perceptual + self.config.kl_weight * kl.clamp(min=self.config.free_bits).mean()
        with torch.no_grad():
            n = RECON_METRIC_FRAMES if self.training else x.shape[0]
            recon_mse = F.mse_loss(torch.sigmoid(self.unet2(pred[-1][:n])).float(), x[:n])
        metrics = {"perceptual": perceptual.item(), "kl": kl.sum(1).mean().item(), "recon": recon_mse.item()}
        if x_later is not None:
            slow = slowness(*mu.float().chunk(2))
            loss = loss + self.config.temporal_weight * slow
            metrics["slowness"] = slow.item()
        return loss, metrics
