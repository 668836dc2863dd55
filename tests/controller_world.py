"""A tiny untrained world model (V, M and latents) for the controller and iterate tests, and their helpers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from core.checkpoint import save_checkpoint
from core.models.controller import Controller, ControllerConfig
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.vae import ConvVAE, VAEConfig
from core.train.controller import ControllerTrainConfig
from tests.conftest import random_latents

Z, H = 8, 16


def make_world(d: Path) -> SimpleNamespace:
    """Tiny untrained V and M checkpoints and a latent file of 3 random 40-step episodes, written to ``d`` (the
    ``world`` fixture of tests/conftest.py)."""
    torch.manual_seed(0)
    vision, memory = d / "vision.safetensors", d / "memory.safetensors"
    save_checkpoint(vision, ConvVAE(VAEConfig(z_dim=Z)), kind="conv_vae", config=VAEConfig(z_dim=Z))
    m = MDNRNN(MDNRNNConfig(z_dim=Z, hidden_dim=H, n_gaussians=2))
    with torch.no_grad():
        m.head.bias[-1] = -3.0  # the done head fires rarely
    save_checkpoint(memory, m, kind="mdnrnn", config=m.config)
    latents = random_latents(d / "latents.npz", vision, Z)
    return SimpleNamespace(dir=d, vision=vision, memory=memory, latents=latents)


def dream_config(world: SimpleNamespace, out: Path, **kw: object) -> ControllerTrainConfig:
    base = dict(vision=world.vision, memory=world.memory, latents=world.latents, out=out, population=6,
                rollouts=2, generations=4, max_steps=30, real_check_every=0, threads=1)  # fmt: skip
    return ControllerTrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def controller_checkpoint(world: SimpleNamespace, path: Path, hidden: int) -> Path:
    torch.manual_seed(hidden)
    c = Controller(ControllerConfig(Z, hidden))
    return save_checkpoint(path, c, kind="controller", config=c.config,
                           extra={"vision": str(world.vision), "memory": str(world.memory)})  # fmt: skip
