"""What the pedal does from rest, in the dream and in reality: the car at the reset frame, the steering at 0 and the
gas held at each of several values for a number of steps (with ``--brake`` pressed beside it: CarRacing's brake
wins over the gas, so reality stands; a dream that rolls off teaches a controller to press both).

Reality (the track of each episode, reset with its seed) reports its return and the speed its HUD shows
(:func:`core.envs.car_racing.hud_speed`) at the read-out steps; each M reports the dream's return from V's encoding
of the same reset frame (M's zero state, ``--dreams`` random streams, temperature ``--tau``) and, for an M with a
speed head, the speed the head reads from h. Reality stands with no gas (speed 0, -0.1 a step); a dream whose car
rolls off without gas, or pays for standing, teaches a controller to leave the gas.

Usage:
    .venv/bin/python scripts/pedal_response.py --data-dir data/check_agent10 --vision runs/s21/v_tw0.15.safetensors \
        --memories runs/s24/m_stops_w10.safetensors runs/s23/m_seed1.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from core.data.episodes import list_episodes, read_episode
from core.envs.car_racing import hud_speed, make_real_env
from core.envs.dream import BatchedDream
from core.envs.world_model import WorldModel


def reality(
    seeds: list[int], gas: float, steps: int, read_at: tuple[int, ...], brake: float = 0.0
) -> tuple[float, list[float]]:
    """Mean return over the tracks and mean HUD speed at each read-out step, the gas held at ``gas`` (and the brake
    at ``brake``, in [0, 1]) from rest."""
    returns, speeds = [], []
    for seed in seeds:
        env = make_real_env()
        env.reset(seed=seed)
        total, read = 0.0, []
        for t in range(1, steps + 1):
            obs, r, term, _, _ = env.step(np.array([0.0, gas, brake], np.float32))
            total += float(r)
            if t in read_at:
                read.append(float(hud_speed(obs)))
            if term:
                read += [float(hud_speed(obs))] * (len(read_at) - len(read))
                break
        env.close()
        returns.append(total)
        speeds.append(read)
    return float(np.mean(returns)), np.mean(speeds, 0).tolist()


@torch.no_grad()
def dream(
    wm: WorldModel,
    frames: list[np.ndarray],
    gas: float,
    steps: int,
    read_at: tuple[int, ...],
    dreams: int,
    tau: float,
    brake: float = 0.0,
) -> tuple[float, list[float] | None]:
    """Mean dream return and mean head speed at each read-out step (None without a speed head), from each reset
    frame with the gas held at ``gas`` and the brake at ``brake``."""
    memory = wm.require_memory()
    returns, speeds = [], []
    for e, frame in enumerate(frames):
        z0 = wm.encode(frame)[0]
        d = BatchedDream(memory, dreams, tau=tau, max_steps=steps)
        d.reset([e * 1000 + i for i in range(dreams)], z=z0.expand(dreams, -1))
        total = torch.zeros(dreams, dtype=torch.float64)
        read = []
        action = torch.tensor([[0.0, gas, brake]]).expand(dreams, 3)
        for t in range(1, steps + 1):
            _, r, _, _ = d.step(action)
            total += r.double()
            speed = d.predicted_speed()
            if t in read_at and speed is not None:
                read.append(float(speed.mean()))
        returns.append(float(total.mean()))
        speeds.append(read)
    return float(np.mean(returns)), (np.mean(speeds, 0).tolist() if speeds[0] else None)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir", type=Path, required=True, help="episodes whose tracks (seeds) and reset frames are used"
    )
    p.add_argument("--vision", type=Path, required=True)
    p.add_argument("--memories", type=Path, nargs="+", required=True)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--gas", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    p.add_argument("--brake", type=float, default=0.0, help="brake held beside every gas value, in [0, 1]")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--read-at", type=int, nargs="+", default=[50, 100, 200])
    p.add_argument("--dreams", type=int, default=4)
    p.add_argument("--tau", type=float, default=0.5)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if not 0.0 <= args.brake <= 1.0:
        p.error(f"--brake must be in [0, 1], got {args.brake}")
    read_at = tuple(k for k in args.read_at if k <= args.steps)
    eps = [read_episode(f) for f in list_episodes(args.data_dir)[: args.episodes]]
    frames = [ep.frames[0] for ep in eps]  # the reset frames every dream starts from
    out: dict = {"reality": {}}
    print(f"from rest, steering 0, gas held, brake {args.brake:.2f}; return over {args.steps} steps, speed at steps "
          f"{list(read_at)}")  # fmt: skip
    for gas in args.gas:
        ret, real_speed = reality([int(ep.seed) for ep in eps], gas, args.steps, read_at, args.brake)
        out["reality"][gas] = {"return": ret, "speed": real_speed}
        print(f"reality   gas {gas:.2f}: return {ret:8.1f}  speed {' / '.join(f'{v:.1f}' for v in real_speed)}")
    for path in args.memories:
        wm = WorldModel.load(args.vision, path, None)
        out[str(path)] = {}
        for gas in args.gas:
            ret, speed = dream(wm, frames, gas, args.steps, read_at, args.dreams, args.tau, args.brake)
            out[str(path)][gas] = {"return": ret, "speed": speed}
            shown = "-" if speed is None else " / ".join(f"{v:.1f}" for v in speed)
            print(f"{path.name} gas {gas:.2f}: return {ret:8.1f}  speed {shown}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
