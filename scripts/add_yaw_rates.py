"""Fill the yaw rates into a latent file written before ``encode`` read them, from its episodes' own frames.

Each latent episode is matched to an episode file of the given directories by its track seed and its recorded
actions (exactly equal, so two episodes of one seed driven by different policies are told apart); the yaw rate of
every frame is read from the HUD's gyroscope bar (:func:`core.envs.car_racing.hud_yaw_rate`), as ``encode`` does,
without running V again. An episode with no match is an error and nothing is written.

Usage:
    .venv/bin/python scripts/add_yaw_rates.py --latents runs/s28/iterate/round_1/latents.npz \
        --data-dirs data/s17_agent data/s17_random data/s24_stops --out runs/s29/lat_r4_yaw.npz
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from core.data.datasets import LatentEpisodes
from core.data.episodes import list_episodes, read_episode
from core.envs.car_racing import hud_yaw_rate
from core.errors import DreamExplorerError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latents", type=Path, required=True)
    p.add_argument("--data-dirs", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        latents = LatentEpisodes.load(args.latents)
        by_seed: dict[int, list[tuple[Path, np.ndarray]]] = {}  # seed -> (file, its actions), read once
        for d in args.data_dirs:
            for f in list_episodes(d):
                meta = read_episode(f, frames=False)
                by_seed.setdefault(meta.seed, []).append((f, meta.actions))
    except DreamExplorerError as exc:
        sys.exit(f"error: {exc}")
    yaw = []
    for i in range(latents.n_episodes):
        ep = latents.episode(i)
        seed = int(latents.seeds[i])
        match = next((f for f, actions in by_seed.get(seed, []) if np.array_equal(actions, ep["action"])), None)
        if match is None:
            sys.exit(f"episode {i} (seed {seed}, {len(ep['action'])} steps) is in none of {args.data_dirs}")
        yaw.append(hud_yaw_rate(read_episode(match).frames))
    filled = dataclasses.replace(latents, yaw_rates=np.concatenate(yaw).astype(np.float32))
    print(f"{filled.n_episodes} episodes, yaw rates of {sum(map(len, yaw))} frames -> {filled.save(args.out)}")


if __name__ == "__main__":
    main()
