"""Pure ``nn.Module`` models, each with a frozen config dataclass. No file I/O, no env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
VISION_KINDS = ("conv_vae", "dds_vae")

__all__ = [
    "MODEL_KINDS",
    "VISION_KINDS",
    "ConvVAE",
    "DDSVAE",
    "DDSVAEConfig",
    "VAEConfig",
    "MDNRNN",
    "MDNRNNConfig",
    "Controller",
    "ControllerConfig",
]
