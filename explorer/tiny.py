"""Untrained world-model checkpoints and short synthetic episodes: for the tests, and to try the app's panels
before any model is trained. The models have the shipped architectures (so their costs are the real ones);
their weights are random, so their dreams are noise, except that the MDN-RNN's done head is biased to "never"
(a random done head would end every dream within a step or two)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.api import Episode, default_paths, save_checkpoint, write_episode, write_manifest


def make_untrained_assets(directory: str | Path, vision_kind: str = "conv_vae", seed: int = 0) -> Path:
    """Write untrained V, M and C checkpoints named like the shipped ones (``convvae_*`` or ``ddsvae_*``) and the
    folder's asset manifest.

    Args:
        directory: where to write (created if missing).
        vision_kind: ``conv_vae`` (Ha's ConvVAE) or ``dds_vae`` (the DDS+VAE).
        seed: torch seed of the random weights.

    Returns:
        ``directory``, to pass as ``--assets``.
    """
    from core.models import MDNRNN, MODEL_KINDS

    torch.manual_seed(seed)
    out = Path(directory)
    paths = default_paths(vision_kind, out)
    for kind, path in (
        (vision_kind, paths.vision),
        ("mdnrnn", paths.memory),
        ("controller", paths.controller),
    ):
        config_cls, model_cls = MODEL_KINDS[kind]
        model = model_cls(config_cls())
        if isinstance(model, MDNRNN):
            with torch.no_grad():
                model.head.bias[-1] = -10.0  # the done logit: P(done) ~ 5e-5
        save_checkpoint(path, model, kind=kind, config=model.config)
    write_manifest(out)  # shipped assets come with their manifest
    return out


def make_episodes(directory: str | Path, episodes: int = 2, steps: int = 24, seed: int = 0) -> Path:
    """Write short episodes of smooth random frames (a moving gradient) and random actions.

    Returns:
        ``directory``, holding ``ep_*.npz`` files.
    """
    rng = np.random.default_rng(seed)
    out = Path(directory)
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    for e in range(episodes):
        phase = rng.uniform(0, 2 * np.pi)
        frames = np.stack([
            np.stack([128 + 100 * np.sin(xx / 9 + phase + t / 5), 128 + 100 * np.cos(yy / 11 + t / 7),
                      np.full_like(xx, 60.0 + 2 * t)], axis=-1)
            for t in range(steps + 1)
        ]).clip(0, 255).astype(np.uint8)  # fmt: skip
        write_episode(
            out / f"ep_{seed + e:010d}.npz",
            Episode(
                frames=frames,
                actions=rng.uniform([-1, 0, 0], [1, 1, 1], (steps, 3)).astype(np.float32),
                rewards=rng.normal(-0.1, 1.0, steps).astype(np.float32),
                terminated=np.zeros(steps, bool),
                truncated=np.eye(1, steps, steps - 1, dtype=bool)[0],
                seed=seed + e,
            ),
        )
    return out
