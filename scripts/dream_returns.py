"""Controllers' returns on the same dreams, paired: which one the dream, or the penalised dream, prefers.

Every controller drives the same ``--dreams`` dreams (their seeds and real starting states shared: common random
numbers) of ``--max-steps`` steps in M, or in an ensemble of Ms (dream r dreamt by member r mod K, the controllers
reading ``--memory``'s h, as ``train-controller --dream-ensemble`` trains them). A dream's return is the sum of M's
reward; with ``--penalty L`` it is that minus L times the members' disagreement at every step (MOPO, Yu et al., 2020,
eq. 7; ``core.train.disagreement``). Printed per penalty: each controller's mean return, and its paired difference from
the first controller with the standard error of that mean.

Starts are drawn as ``train-controller`` draws them (1024 real states of ``--latents`` at steps ``--start-step-min``..
``--start-step-max``, seeded by ``--starts-seed``). With ``--at-rest`` they are instead every state where the car is at
rest (HUD speed below 0.5 units/s there and 20 steps before) at steps ``--start-step-min``, + 50, ... ``--release-brake``
adds, after each controller, a copy of it whose brake is held at 0.

    .venv/bin/python scripts/dream_returns.py --memory M --dream-ensemble M1 M2 --latents L --controllers C1 C2 \
        --dreams 512 --penalty 0 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_model
from core.data.datasets import LatentEpisodes
from core.errors import DreamExplorerError
from core.models import MDNRNN, Controller
from core.train.controller_setup import START_POOL
from core.train.fitness import DreamEvaluator, DreamStarts, dream_check_plan

REST_SPEED = 0.5
"""Speed below which the car counts as at rest (world units per second)."""


def rest_states(latents: LatentEpisodes, step_min: int, every: int = 50, before: int = 20) -> tuple[np.ndarray, ...]:
    """``(episodes, steps)``, int64 (S,) each: the states at steps ``step_min``, + ``every``, ... of every episode
    where the car's speed is below :data:`REST_SPEED` there and ``before`` steps earlier.

    Raises:
        DreamExplorerError: the latent file has no speeds (encode it again).
    """
    if latents.speeds is None:
        raise DreamExplorerError("--at-rest needs a latent file with the car's speeds (encode it again)")
    episodes, steps = [], []
    for e in range(latents.n_episodes):
        speed = latents.episode(e)["speed"]
        for t in range(max(step_min, before), len(speed) - 1, every):
            if speed[t] < REST_SPEED and speed[t - before] < REST_SPEED:
                episodes.append(e)
                steps.append(t)
    return np.array(episodes, np.int64), np.array(steps, np.int64)


@torch.no_grad()
def dream_returns(args: argparse.Namespace) -> tuple[list[str], dict[float, np.ndarray]]:
    """The controllers' names (with ``--release-brake`` each followed by its brake-free copy) and their returns,
    float64 (controllers, dreams), per penalty of ``args.penalty``."""
    memories = [load_model(p, "mdnrnn") for p in [args.memory, *args.dream_ensemble]]
    assert all(isinstance(m, MDNRNN) for m in memories)
    controllers: list[Controller] = []
    names: list[str] = []
    for path in args.controllers:
        c = load_model(path, "controller")
        assert isinstance(c, Controller)
        controllers += [c, c.without_brake()] if args.release_brake else [c]
        names += [str(path), f"{path} (brake 0)"] if args.release_brake else [str(path)]
    latents = LatentEpisodes.load(args.latents)
    if args.at_rest:
        episodes, steps = rest_states(latents, args.start_step_min)
        if len(episodes) == 0:
            raise DreamExplorerError(f"no state at rest in {args.latents} from step {args.start_step_min}")
        starts = DreamStarts.at(latents, memories[0], episodes, steps)
    else:
        starts = DreamStarts.from_latents(latents, memories[0], START_POOL, args.start_step_min, args.start_step_max,
                                          args.starts_seed)  # fmt: skip
    print(f"{len(starts)} real starting states; {args.dreams} dreams of {args.max_steps} steps, tau {args.tau}")
    members = [(m, starts.for_memory(latents, m)) for m in memories[1:]]
    plan = dream_check_plan(args.plan_seed, args.dreams, len(starts))
    candidates = np.stack([c.get_flat() for c in controllers])
    out = {}
    for penalty in args.penalty:
        evaluator = DreamEvaluator(memories[0], controllers[0].config, args.tau, args.max_steps, starts,
                                   members=members, disagreement_penalty=penalty)  # fmt: skip
        returns = evaluator.rollout_returns(candidates, plan)
        assert returns is not None
        out[penalty] = returns
    return names, out


def main(argv: list[str] | None = None) -> dict[float, np.ndarray] | int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memory", type=Path, required=True, help="M whose h the controllers read (ensemble member 0)")
    p.add_argument("--dream-ensemble", type=Path, nargs="*", default=[], help="further Ms of the same sizes")
    p.add_argument("--latents", type=Path, required=True, help="latent file of the dreams' real starting states")
    p.add_argument("--controllers", type=Path, nargs="+", required=True)
    p.add_argument("--dreams", type=int, default=512)
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--penalty", type=float, nargs="+", default=[0.0], help="disagreement penalties (0: none)")
    p.add_argument("--start-step-min", type=int, default=0)
    p.add_argument("--start-step-max", type=int, default=900)
    p.add_argument("--at-rest", action="store_true", help="start from every state where the car is at rest")
    p.add_argument("--release-brake", action="store_true", help="add each controller with its brake held at 0")
    p.add_argument("--starts-seed", type=int, default=1, help="seed of the starts (train-controller's --seed)")
    p.add_argument("--plan-seed", type=int, default=11, help="seed of the dreams and of their starts' order")
    args = p.parse_args(argv)
    if args.dreams < 1 or args.max_steps < 1 or min(args.penalty) < 0:
        p.error("--dreams and --max-steps must be >= 1 and --penalty >= 0")
    if max(args.penalty) > 0 and not args.dream_ensemble:
        p.error("--penalty needs --dream-ensemble (the disagreement of two or more Ms)")
    torch.set_num_threads(1)
    try:
        names, out = dream_returns(args)
    except (DreamExplorerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for penalty, returns in out.items():
        print(f"penalty {penalty:g}:")
        for i, (name, r) in enumerate(zip(names, returns, strict=True)):
            d = r - returns[0]
            paired = f"{d.mean():+.1f} (standard error {d.std(ddof=1) / np.sqrt(len(d)):.1f})" if i else "-"
            print(f"  {name}: {r.mean():.2f}  paired vs the first: {paired}")
    return out


if __name__ == "__main__":
    result = main()
    raise SystemExit(result if isinstance(result, int) else 0)
