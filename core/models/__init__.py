"""Pure ``nn.Module`` models, each with a frozen config dataclass. No file I/O, no env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import torch
from torch import nn

from core.models.controller import Controller, ControllerConfig
from core.models.dds_vae import DDSVAE, DDSVAEConfig
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.vae import ConvVAE, VAEConfig

MODEL_KINDS: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "conv_vae": (VAEConfig, ConvVAE),
    "dds_vae": (DDSVAEConfig, DDSVAE),
    "mdnrnn": (MDNRNNConfig, MDNRNN),
    "controller": (ControllerConfig, Controller),
}
VISION_KINDS: tuple[Literal["conv_vae"], Literal["dds_vae"]] = ("conv_vae", "dds_vae")
VisionModel: TypeAlias = ConvVAE | DDSVAE
"""A vision model V: ``encode`` float32 frames (B, 3, S, S) in [0, 1] -> ``(mu, logvar)`` float32 (B, z_dim),
``decode`` z -> frames, ``kind`` one of :data:`VISION_KINDS`, ``config.z_dim``; the DDS+VAE adds the DDS mask
(``encode_with_mask``, ``set_eval_gates``), told apart with ``isinstance(v, DDSVAE)``."""


def set_memory_format(module: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Convert ``module``'s 4-D weights in place to ``memory_format`` (``torch.channels_last`` or
    ``torch.contiguous_format``) and return it: ``Module.to(memory_format=...)``, which torch's type stubs lack."""
    return module.to(memory_format=memory_format)  # type: ignore[call-overload]  # not in torch's stubs


__all__ = [
    "set_memory_format",
    "MODEL_KINDS",
    "VISION_KINDS",
    "VisionModel",
    "ConvVAE",
    "DDSVAE",
    "DDSVAEConfig",
    "VAEConfig",
    "MDNRNN",
    "MDNRNNConfig",
    "Controller",
    "ControllerConfig",
]
