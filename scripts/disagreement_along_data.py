"""How much an ensemble of Ms disagrees along real episodes, overall and by the car's speed.

The members step along each episode's real z, actions, speeds and yaw rates (teacher forcing, from h = 0), and
their disagreement about z_{t+1} (``core.train.disagreement.EnsembleDisagreement``: the standard deviation of their
predicted means, RMS over z) is collected per step. Prints its mean and percentiles, and its mean by speed band: a
penalty on it (``train-controller --disagreement-penalty``) pays least where it is lowest.

    .venv/bin/python scripts/disagreement_along_data.py --latents runs/s29/lat_r4_yaw.npz \\
        --memory runs/s29/m_yaw_s2.safetensors runs/s29/m_yaw_s1.safetensors runs/s30/m_yaw_s3.safetensors
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from core.checkpoint import load_model
from core.data.datasets import LatentEpisodes
from core.errors import DreamExplorerError
from core.train.disagreement import EnsembleDisagreement

SPEED_BANDS = ((0.0, 1.0), (1.0, 20.0), (20.0, 50.0), (50.0, 1e9))
"""Speed bands, world units per second: at rest, slow, cruising, fast."""


def disagreement_along(latents: LatentEpisodes, members: list, episodes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(u, speed)``, float64 (T,) each over every step of ``episodes``: the members' disagreement and the HUD's
    speed at that step. Raises ValueError when the members read the speed or yaw rate and the file lacks them."""
    us, speeds = [], []
    hidden = members[0].config.hidden_dim
    for e in episodes:
        ep = latents.episode(e)
        z, a = torch.from_numpy(ep["mu"]).float(), torch.from_numpy(ep["action"]).float()
        s = torch.from_numpy(ep["speed"]).float() if ep.get("speed") is not None else None
        y = torch.from_numpy(ep["yaw_rate"]).float() if ep.get("yaw_rate") is not None else None
        critic = EnsembleDisagreement(
            members, [(torch.zeros(1, 1, hidden), torch.zeros(1, 1, hidden)) for _ in members]
        )
        for t in range(len(a)):
            st = slice(t, t + 1)
            us.append(
                float(critic.step(z[st], a[st], None if s is None else s[st], None, None if y is None else y[st]))
            )
            speeds.append(0.0 if s is None else float(s[t]))
    return np.asarray(us), np.asarray(speeds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", required=True, help="latent file from encode (with speeds and yaw rates)")
    parser.add_argument("--memory", nargs="+", required=True, help="two or more MDN-RNN checkpoints")
    parser.add_argument("--episodes", type=int, default=24, help="episodes drawn from the file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        latents = LatentEpisodes.load(args.latents)
        members = [load_model(p, "mdnrnn") for p in args.memory]
        rng = np.random.default_rng(args.seed)
        picked = rng.choice(latents.n_episodes, min(args.episodes, latents.n_episodes), replace=False)
        u, speed = disagreement_along(latents, members, [int(e) for e in picked])
    except (DreamExplorerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    pct = np.percentile(u, [50, 90, 99, 100])
    print(f"{len(picked)} episodes, {len(u)} steps: disagreement mean {u.mean():.4f}, median {pct[0]:.4f}, "
          f"90th {pct[1]:.4f}, 99th {pct[2]:.4f}, max {pct[3]:.4f}")  # fmt: skip
    for lo, hi in SPEED_BANDS:
        band = (speed >= lo) & (speed < hi)
        if band.any():
            print(f"speed {lo:g}..{'' if hi > 1e8 else f'{hi:g}'}: {band.sum()} steps, mean {u[band].mean():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
