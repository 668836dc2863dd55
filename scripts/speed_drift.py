"""How far an M's speed drifts from the recorded speed over many steps, fed the recorded actions.

For an M that reads the car's speed (``train-memory --speed-input``): from step ``--start`` of ``--episodes``
non-random episodes of a latent file (random-policy ones with ``--policy random``), the M reads the real prefix,
then its speed is stepped for ``--steps`` steps with the recorded actions, (1) by its speed model alone along the
real z (a Markov speed model only) and (2) in the dream at each ``--tau`` (the dream's own z). Printed: the mean
recorded speed and each mean stepped speed at a few horizons, in world units per second. For an M that also reads
the yaw rate (``--yaw-input``): the RMS error of the heading the stepped yaw rate turns through (its sum over the
steps times CarRacing's 1/50 s), in radians, against the recorded yaw rate's, and the RMS of the recorded heading
change itself (a car that never turns).

    .venv/bin/python scripts/speed_drift.py --memory M --latents runs/s25/lat_agent_speed.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_model
from core.data.datasets import LatentEpisodes
from core.envs.dream import BatchedDream
from core.errors import DreamExplorerError
from core.models.speed import SPEED_SCALE, YAW_SCALE, MarkovSpeed, car_state

DT = 1.0 / 50
"""CarRacing's step, seconds (its FPS is 50)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memory", type=Path, required=True)
    p.add_argument("--latents", type=Path, required=True, help="latent file with speeds")
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--start", type=int, default=200, help="real steps read before the speed is stepped")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--tau", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--policy", choices=["agent", "random"], default="agent", help="non-random or random-policy episodes"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        m = load_model(args.memory, "mdnrnn")
        lat = LatentEpisodes.load(args.latents)
    except DreamExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not m.config.speed_input or lat.speeds is None or (m.config.yaw_input and lat.yaw_rates is None):
        print("error: needs an M that reads the speed and a latent file with speeds (and yaw rates)", file=sys.stderr)
        return 2
    end = args.start + args.steps
    policies = lat.policies if lat.policies is not None else np.full(lat.n_episodes, "unknown")
    wanted = (policies == "random") == (args.policy == "random")
    ok = [i for i in range(lat.n_episodes) if wanted[i] and lat.episode(i)["action"].shape[0] >= end]
    if not ok:
        print(f"error: no {args.policy} episode of {args.latents} has {end} steps", file=sys.stderr)
        return 2
    pick = np.random.default_rng(args.seed).choice(ok, min(args.episodes, len(ok)), replace=False)
    eps = [lat.episode(int(i)) for i in pick]
    z = torch.tensor(np.stack([e["mu"][: end + 1] for e in eps]))
    a = torch.tensor(np.stack([e["action"][:end] for e in eps]))
    s = torch.tensor(np.stack([e["speed"][: end + 1] for e in eps]))
    yaw = torch.tensor(np.stack([e["yaw_rate"][: end + 1] for e in eps])) if m.config.yaw_input else None
    at = [k for k in (10, 50, 100, 200, 500) if k <= args.steps]
    real = s[:, args.start + 1 :]
    print(
        f"{len(eps)} episodes from step {args.start}; recorded speed "
        + ", ".join(f"{real[:, k - 1].mean():.1f} @{k}" for k in at)
    )
    real_heading = None if yaw is None else _heading(yaw[:, args.start + 1 : end + 1])
    if real_heading is not None:
        print("heading change of the recorded yaw rate, RMS rad: " + _rms(real_heading, at))
    with torch.no_grad():
        if isinstance(m.speed_head, MarkovSpeed):  # stepped alone, as the dream steps it (it reads no h)
            window = slice(args.start, end)
            car0 = car_state(s[:, args.start], None if yaw is None else yaw[:, args.start])
            rolled_car = m.speed_head.rollout(z[:, window], a[:, window], car0)
            rolled = rolled_car[..., 0] * SPEED_SCALE
            print("speed model along the real z: " + ", ".join(f"{rolled[:, k - 1].mean():.1f} @{k}" for k in at))
            if real_heading is not None:
                stepped = _heading(rolled_car[..., 1] * YAW_SCALE)
                print("heading error, yaw model along the real z, RMS rad: " + _rms(stepped - real_heading, at))
        _, state = m(z[:, : args.start], a[:, : args.start], None, s[:, : args.start], _upto(yaw, args.start))
        for tau in args.tau:
            dream = BatchedDream(m, len(eps), tau=tau, max_steps=args.steps)
            dream.reset(
                list(range(len(eps))), z=z[:, args.start], state=state, speed=s[:, args.start],
                yaw=None if yaw is None else yaw[:, args.start],
            )  # fmt: skip
            out, yaws = [], []
            for t in range(args.start, end):
                dream.step(a[:, t])
                out.append(dream.speed.clone())
                yaws.append(dream.yaw.clone())
            print(f"dream at tau {tau}: " + ", ".join(f"{out[k - 1].mean():.1f} @{k}" for k in at))
            if real_heading is not None:
                heading_error = _heading(torch.stack(yaws, 1)) - real_heading
                print(f"  heading error in the dream at tau {tau}, RMS rad: " + _rms(heading_error, at))
    return 0


def _heading(yaw_rates: torch.Tensor) -> torch.Tensor:
    """The heading turned through (B, T), radians, of yaw rates (B, T) in rad/s held for one step each."""
    return (yaw_rates * DT).cumsum(1)


def _rms(x: torch.Tensor, at: list[int]) -> str:
    """RMS over the episodes of ``x`` (B, T) at each horizon of ``at``."""
    return ", ".join(f"{x[:, k - 1].pow(2).mean().sqrt():.2f} @{k}" for k in at)


def _upto(x: torch.Tensor | None, t: int) -> torch.Tensor | None:
    """The first ``t`` frames of per-frame readings (B, T), or None."""
    return None if x is None else x[:, :t]


if __name__ == "__main__":
    raise SystemExit(main())
