"""How a controller drives in reality and in M's dream: its mean actions, the car's speed and the return.

A dream-trained controller that fails in reality is read here: which pedal and wheel it uses in each world, and
whether the dream's car goes where reality's does. Reality: whole blocks of ``--block`` steps on each track, from
the reset. Dream: ``--dreams`` dreams of ``--dream-steps`` steps from real states of a latent file (drawn as
``train-controller`` draws its starts), at the HUD's speed of their frame for an M that reads the speed.

With ``--branch-steps``, each track's real episode also branches: at each of these steps ``--dreams`` dreams start
from reality's own state there (z, M's h and c, speed and yaw rate) and the controller drives them closed loop for
``--dream-steps`` steps beside reality's next steps. Where the two part, the dream never shows the controller what
reality does (a sharp bend taken too fast, a stand on the grass).

    .venv/bin/python scripts/controller_behaviour.py --vision V --memory M --controller C \
        --latents runs/s25/lat_agent_speed.npz --tracks 1900000 1900001 --branch-steps 100 200 300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from core.data.datasets import LatentEpisodes
from core.envs.car_racing import car_speed, car_yaw_rate, make_real_env
from core.envs.dream import BatchedDream
from core.envs.world_model import WorldModel, WorldModelObservation
from core.errors import DreamExplorerError
from core.train.fitness import DreamStarts


def summary(actions: np.ndarray, speeds: list[float], ret: float, yaw_rates: list[float] | None = None) -> str:
    """One line: mean steer, |steer|, the mean change of the steering from step to step, gas, brake, the share of
    steps braking above 0.3, speed first -> middle -> last (world units per second), the mean |yaw rate| (rad/s;
    reality only: a car circling holds it high), and the return. ``actions``: (T, 3) one run's steps, or (T, N, 3)
    N runs side by side."""
    a = np.asarray(actions)
    change = np.abs(np.diff(a[..., 0], axis=0)).mean()
    a = a.reshape(-1, 3)
    return (
        f"steer {a[:, 0].mean():+.2f} |steer| {np.abs(a[:, 0]).mean():.2f} |change| {change:.2f} "
        f"gas {a[:, 1].mean():.2f} "
        f"brake {a[:, 2].mean():.2f} (above 0.3 on {np.mean(a[:, 2] > 0.3):.0%}); speed {speeds[0]:.1f} -> "
        f"{speeds[len(speeds) // 2]:.1f} -> {speeds[-1]:.1f}; "
        + ("" if yaw_rates is None else f"|yaw rate| {np.abs(yaw_rates).mean():.2f}; ")
        + f"return {ret:.1f}"
    )


def in_reality(wm: WorldModel, include_h: bool, track: int, steps: int, block: int) -> tuple[list, ...]:
    """Drive ``steps`` steps on ``track`` and print one line per ``block`` of them.

    Returns:
        ``(states, actions, rewards, speeds)`` per step taken: M's tracked state ``(z, h, c, speed, yaw)`` before
        the step (tensors as :class:`RealTracker` holds them; h and c None without h), the action (3,), the reward,
        the car's speed after the step (world units per second).
    """
    assert wm.controller is not None
    env = WorldModelObservation(make_real_env(), wm, include_h=include_h)
    states: list = []
    rewards: list[float] = []
    try:
        obs, _ = env.reset(seed=track)
        actions, speeds, yaw_rates, ret = [], [], [], 0.0
        for t in range(steps):
            tr = env.tracker
            hc = (None, None) if tr.state is None else (tr.state[0].clone(), tr.state[1].clone())
            states.append((tr.z.clone(), *hc, tr.speed, tr.yaw))
            a = wm.controller.act(obs)
            obs, r, terminated, truncated, _ = env.step(a)
            actions.append(a)
            rewards.append(r)
            speeds.append(car_speed(env))
            yaw_rates.append(car_yaw_rate(env))
            ret += r
            if (t + 1) % block == 0 or terminated or truncated:
                first = (t // block) * block
                print(
                    f"reality, track {track}, steps {first}-{t}: "
                    + summary(np.array(actions[first:]), speeds[first:], ret, yaw_rates[first:])
                )
            if terminated or truncated:
                break
    finally:
        env.close()
    return states, actions, rewards, speeds


@torch.no_grad()
def branches(
    wm: WorldModel, track: int, real: tuple[list, ...], at: list[int], dreams: int, steps: int, tau: float
) -> list[dict]:
    """At each real step of ``at``, ``dreams`` closed-loop dreams of ``steps`` steps from reality's state there
    (``real``: :func:`in_reality`'s lists); print reality's next ``steps`` steps and the dreams' mean beside them.

    Returns:
        One dict per branch (steps whose ``steps`` would run past the episode are skipped): ``step``;
        ``real_return`` and ``dream_returns`` (float, and float32 (dreams,)); ``real_speeds`` and ``dream_speeds``
        (``steps + 1`` values from the branch's start, world units per second; the dreams' mean, nan for an M
        without a speed head); ``real_actions`` and ``dream_actions`` (float32 (steps, 3) and (steps, dreams, 3)).

    Raises:
        DreamExplorerError: the controller does not read h (there is no M state to branch from).
    """
    assert wm.controller is not None and wm.memory is not None
    states, actions, rewards, real_speeds = real
    out = []
    for k in at:
        if k + steps > len(actions):
            continue
        z, h, c, speed, yaw = states[k]
        if h is None:
            raise DreamExplorerError("--branch-steps needs a controller that reads h")
        dream = BatchedDream(wm.memory, dreams, tau, steps)
        obs = dream.reset(np.arange(dreams) + 1000 * k, z=z, state=(h, c), speed=speed, yaw=yaw)
        start = float(speed) if speed is not None else float("nan")
        speeds, acts, ret = [start], [], torch.zeros(dreams)
        for _ in range(steps):
            a = wm.controller(obs)
            obs, r, *_ = dream.step(a)
            ret += r
            acts.append(a.numpy())
            s = dream.predicted_speed()
            speeds.append(float(s.mean()) if s is not None else float("nan"))
        real_a, real_s = np.array(actions[k : k + steps]), [start, *real_speeds[k : k + steps]]
        real_ret, dream_a = float(sum(rewards[k : k + steps])), np.stack(acts)
        out.append({
            "step": k, "real_return": real_ret, "dream_returns": ret.numpy(), "real_speeds": real_s,
            "dream_speeds": speeds, "real_actions": real_a, "dream_actions": dream_a,
        })  # fmt: skip
        print(f"track {track}, from step {k}, {steps} steps: reality {summary(real_a, real_s, real_ret)}")
        dream_line = summary(dream_a, speeds, float(ret.mean()))
        print(f"    dream ({dreams}, tau {tau}): {dream_line} +- {float(ret.std()):.1f}")
    return out


@torch.no_grad()
def in_dream(wm: WorldModel, include_h: bool, latents: Path, dreams: int, steps: int, tau: float, seed: int) -> None:
    """Run ``dreams`` dreams of ``steps`` steps from real states and print the mean line over all of them."""
    assert wm.controller is not None and wm.memory is not None
    starts = DreamStarts.from_latents(LatentEpisodes.load(latents), wm.memory, dreams, 0, 900, seed)
    dream = BatchedDream(wm.memory, dreams, tau, steps)
    obs = dream.reset(
        np.arange(dreams) + seed * dreams, z=starts.z, state=(starts.h[None], starts.c[None]), speed=starts.speed
    )
    speed = dream.predicted_speed()
    speeds = [float(speed.mean()) if speed is not None else float("nan")]
    actions, ret = [], torch.zeros(dreams)
    for _ in range(steps):
        a = wm.controller(obs if include_h else obs[:, : wm.z_dim])
        obs, r, *_ = dream.step(a)
        ret += r
        actions.append(a.numpy())
        speed = dream.predicted_speed()
        speeds.append(float(speed.mean()) if speed is not None else float("nan"))
    print(
        f"dream ({dreams} from real states, {steps} steps, tau {tau}): "
        + summary(np.stack(actions), speeds, float(ret.mean()))
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vision", type=Path, required=True)
    p.add_argument("--memory", type=Path, required=True)
    p.add_argument("--controller", type=Path, required=True)
    p.add_argument("--latents", type=Path, required=True, help="latent file of the dreams' real starting states")
    p.add_argument("--tracks", type=int, nargs="*", default=[], help="real tracks (none: the dream only)")
    p.add_argument("--steps", type=int, default=300, help="real steps per track")
    p.add_argument("--block", type=int, default=100, help="real steps per printed line")
    p.add_argument("--dreams", type=int, default=64)
    p.add_argument("--dream-steps", type=int, default=100)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--branch-steps", type=int, nargs="*", default=[], help="real steps where dreams branch off")
    p.add_argument("--no-brake", action="store_true", help="read the controller with its brake held at 0")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        wm = WorldModel.load(args.vision, args.memory, args.controller, warn=False)
        assert wm.controller is not None
        include_h = wm.controller.config.hidden_dim > 0
        if args.no_brake:
            wm.controller = wm.controller.without_brake()
        for track in args.tracks:
            real = in_reality(wm, include_h, track, args.steps, args.block)
            branches(wm, track, real, args.branch_steps, args.dreams, args.dream_steps, args.tau)
        in_dream(wm, include_h, args.latents, args.dreams, args.dream_steps, args.tau, args.seed)
    except DreamExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
