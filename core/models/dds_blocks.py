"""The convolutional building blocks of the DDS+VAE (:mod:`core.models.dds_vae`): the U-Net of the selection and
refinement stages (Ronneberger et al., 2015), and the downscaling encoder and upscaling decoder between the 96x96
frame and the 4x16x16 mini mask, and the mini-VAE on the mini mask, as the seed work builds them.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import Tensor, nn

IMAGE_SHAPE = (3, 96, 96)
"""Input and reconstruction shape (C, H, W)."""
MINI_MASK_SHAPE = (4, 16, 16)
"""Shape (C, H, W) of the mini mask between the scaling nets and the mini-VAE."""
BASE_CHANNELS = 16
"""Width of the first U-Net and scaling-net stage (the seed's ``base_ch``)."""


def conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv (no bias, padding 1) + BatchNorm + SiLU; keeps H and W."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.SiLU(inplace=True)
    )


class UNetUp(nn.Module):
    """U-Net decoder stage: 2x2 stride-2 transposed conv (in_ch -> out_ch), concat the skip, conv block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.block = conv_block(2 * out_ch, out_ch)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """(B, in_ch, H, W) and skip (B, out_ch, 2H, 2W) -> (B, out_ch, 2H, 2W)."""
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) 3 -> 3 channels on 96x96, widths 16/32/64/128/256 (96 -> 6 -> 96).

    Encoder: a conv block, then 4 x (max-pool 2 + conv block). Decoder: 4 :class:`UNetUp`, then a 1x1 conv.
    Output: unbounded float32 (B, 3, 96, 96).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, base_ch: int = BASE_CHANNELS) -> None:
        super().__init__()
        widths = [base_ch * 2**i for i in range(5)]
        self.stem = conv_block(in_ch, widths[0])
        stages = list(pairwise(widths))
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), conv_block(a, b)) for a, b in stages)
        self.up = nn.ModuleList(UNetUp(b, a) for a, b in reversed(stages))
        self.head = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_ch, 96, 96) -> (B, out_ch, 96, 96)."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.up:
            h = up(h, skips.pop())
        return self.head(h)


class DownscalingEncoder(nn.Module):
    """Gated frame (B, 3, 96, 96) -> mini mask (B, 4, 16, 16) in (0, 1); with ``in_ch=6`` the gates
    (B, 3, 96, 96) come concatenated after the gated frame (:attr:`DDSVAEConfig.mask_input`).

    block(3, 16) -> 2x2 stride-2 conv + ReLU (48) -> block(16, 32) -> 2x2 stride-2 conv + ReLU (24)
    -> block(32, 64) -> adaptive average pool to 16x16 -> 1x1 conv to 4 channels -> sigmoid.
    """

    def __init__(self, base_ch: int = BASE_CHANNELS, in_ch: int = IMAGE_SHAPE[0]) -> None:
        super().__init__()
        c = base_ch
        self.net = nn.Sequential(
            conv_block(in_ch, c),
            nn.Conv2d(c, c, 2, stride=2), nn.ReLU(inplace=True),
            conv_block(c, 2 * c),
            nn.Conv2d(2 * c, 2 * c, 2, stride=2), nn.ReLU(inplace=True),
            conv_block(2 * c, 4 * c),
            nn.AdaptiveAvgPool2d(MINI_MASK_SHAPE[1:]),
            nn.Conv2d(4 * c, MINI_MASK_SHAPE[0], 1),
            nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, gated: Tensor) -> Tensor:
        """(B, in_ch, 96, 96) -> (B, 4, 16, 16)."""
        return self.net(gated)


class UpscalingDecoder(nn.Module):
    """Mini mask (B, 4, 16, 16) -> (B, 3, 96, 96) in (0, 1), in seven stages whose outputs feed the
    internal perceptual loss.

    block(4, 32) -> bilinear to 24x24 -> block(32, 64) -> 2x2 stride-2 transposed conv + ReLU (48)
    -> block(64, 64) -> 2x2 stride-2 transposed conv + ReLU (96) -> 1x1 conv to 3 channels + sigmoid.
    """

    def __init__(self, base_ch: int = BASE_CHANNELS) -> None:
        super().__init__()
        c = base_ch
        self.stages = nn.ModuleList([
            conv_block(MINI_MASK_SHAPE[0], 2 * c),
            nn.Upsample(size=(24, 24), mode="bilinear", align_corners=True),
            conv_block(2 * c, 4 * c),
            nn.Sequential(nn.ConvTranspose2d(4 * c, 4 * c, 2, stride=2), nn.ReLU(inplace=True)),
            conv_block(4 * c, 4 * c),
            nn.Sequential(nn.ConvTranspose2d(4 * c, 4 * c, 2, stride=2), nn.ReLU(inplace=True)),
            nn.Sequential(nn.Conv2d(4 * c, IMAGE_SHAPE[0], 1), nn.Sigmoid()),
        ])  # fmt: skip

    def activations(self, mini_mask: Tensor) -> list[Tensor]:
        """The output of every stage, in order; the last is the (B, 3, 96, 96) result."""
        out = []
        h = mini_mask
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, mini_mask: Tensor) -> Tensor:
        """(B, 4, 16, 16) -> (B, 3, 96, 96)."""
        return self.activations(mini_mask)[-1]


class MiniVAE(nn.Module):
    """VAE (Kingma & Welling, 2014) on the mini mask: (B, 4, 16, 16) <-> (mu, logvar) (B, z_dim).

    Encoder: 3x3 conv 4 -> 64, 2x2 stride-2 conv 64 -> 128 (8x8), 3x3 conv 128 -> 128, 2x2 stride-2 conv
    128 -> 256 (4x4), 3x3 conv 256 -> 256, each + ReLU; flatten (4096) -> linear mu, logvar.
    Decoder: linear z -> 4096 as 256x4x4, 2x2 stride-2 transposed conv 256 -> 256 (8x8), 3x3 conv
    256 -> 128, 2x2 stride-2 transposed conv 128 -> 128 (16x16), 3x3 conv 128 -> 64, each + ReLU; 3x3 conv
    64 -> 4, sigmoid.
    """

    def __init__(self, z_dim: int, width: int = 4 * BASE_CHANNELS) -> None:
        super().__init__()
        c, m = width, MINI_MASK_SHAPE[0]
        flat = 4 * c * 4 * 4
        self.encoder = nn.Sequential(
            nn.Conv2d(m, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, 2 * c, 2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, 4 * c, 2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Flatten(),
        )  # fmt: skip
        self.fc_mu = nn.Linear(flat, z_dim)
        self.fc_logvar = nn.Linear(flat, z_dim)
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, flat), nn.Unflatten(1, (4 * c, 4, 4)),
            nn.ConvTranspose2d(4 * c, 4 * c, 2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(4 * c, 2 * c, 3, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * c, 2 * c, 2, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(2 * c, c, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c, m, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh weights as the seed's phase 2 draws them: Kaiming-uniform (ReLU gain) for convs and linears,
        Xavier-uniform for transposed convs, zero biases. Uses the global torch RNG."""
        for layer in self.modules():
            if isinstance(layer, nn.ConvTranspose2d):
                nn.init.xavier_uniform_(layer.weight)
            elif isinstance(layer, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            else:
                continue
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    def encode(self, mini_mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 4, 16, 16) -> ``(mu, logvar)``, each (B, z_dim)."""
        h = self.encoder(mini_mask)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """(B, z_dim) -> mini mask (B, 4, 16, 16) in (0, 1)."""
        return self.decoder(z)
