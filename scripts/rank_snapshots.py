"""Do fixed dreams rank a run's checked controller snapshots as their real checks do?

Reads the checked snapshots that ``train-controller`` keeps in its resume state (``<out>.resume.pt``: every real
check's parameters and its mean real return), dreams each one on one fixed set of dreams (the same seeds and
starts for every snapshot: :func:`core.train.fitness.dream_check_plan`, as ``--check-in dream`` does) and prints
the rank (Spearman) and linear (Pearson) correlation between the dream returns and the real checks, over all
snapshots and over those from ``--late`` generations on, then the snapshots the dream ranks highest.

Usage (figures in docs/history.md, session 16):

    .venv/bin/python scripts/rank_snapshots.py runs/s16/dream_mean_s1.resume.pt runs/s16/dream_mean_s2.resume.pt \\
        --memory assets/convvae_memory.safetensors --latents runs/s14/latents.npz --tau 1.0 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.checkpoint import load_model, load_resume_state, save_checkpoint  # noqa: E402
from core.data.datasets import LatentEpisodes  # noqa: E402
from core.models.controller import Controller, ControllerConfig  # noqa: E402
from core.precision import use_bf16  # noqa: E402
from core.train.controller_setup import START_POOL  # noqa: E402
from core.train.fitness import DreamEvaluator, DreamStarts, dream_check_plan  # noqa: E402


def ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks (ties broken by order; the returns here are continuous)."""
    return np.argsort(np.argsort(x)).astype(np.float64)


def correlations(dream: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """(Spearman, Pearson) of two float arrays of the same length (>= 3)."""
    return float(np.corrcoef(ranks(dream), ranks(real))[0, 1]), float(np.corrcoef(dream, real)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("states", type=Path, nargs="+", help="train-controller resume states (*.resume.pt)")
    parser.add_argument("--memory", type=Path, required=True, help="the runs' M")
    parser.add_argument("--latents", type=Path, required=True, help="the runs' latent file (dream starts)")
    parser.add_argument(
        "--dream-ensemble",
        type=Path,
        nargs="*",
        default=[],
        help="more MDN-RNNs to dream in (rollout r in model r mod K, as train-controller's option)",
    )
    parser.add_argument("--tau", type=float, nargs="+", default=[1.0])
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--start-step-max", type=int, default=900)
    parser.add_argument("--dreams", type=int, default=192, help="fixed dreams per snapshot")
    parser.add_argument("--late", type=int, default=150, help="also correlate from this generation on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--save-best",
        type=Path,
        default=None,
        help="write the snapshot the dream ranks highest (at the first --tau) as a controller checkpoint",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    memory = load_model(args.memory, "mdnrnn")
    latents = LatentEpisodes.load(args.latents)
    params, real, where = [], [], []
    for path in args.states:
        state = load_resume_state(path, "train-controller", {"checked": list})
        for c in state["checked"]:
            params.append(c["params"].numpy().astype(np.float64))
            real.append(float(c["real_return"]))
            where.append((path.name.removesuffix(".resume.pt"), int(c["generation"])))
    if len(params) < 3:
        sys.exit(f"need at least 3 checked snapshots, got {len(params)}")
    p, r = np.stack(params), np.array(real)
    late = np.array([g >= args.late for _, g in where])
    starts = DreamStarts.from_latents(latents, memory, START_POOL, 0, args.start_step_max, args.seed)
    members = [(m, starts.for_memory(latents, m)) for m in (load_model(path, "mdnrnn") for path in args.dream_ensemble)]
    limit = 2.0 * float(np.linalg.norm(latents.mu, axis=1).max())
    plan = dream_check_plan(args.seed, args.dreams, len(starts))
    models = f" in an ensemble of {1 + len(members)} MDN-RNNs" if members else ""
    print(f"{len(p)} snapshots ({int(late.sum())} from generation {args.late}), {args.dreams} fixed dreams of "
          f"{args.max_steps} steps each{models}")  # fmt: skip
    bf16 = use_bf16(True, "matmul", print)
    for tau in args.tau:
        evaluator = DreamEvaluator(
            memory, ControllerConfig(), tau, args.max_steps, starts, limit, bf16=bf16, members=members
        )
        returns = evaluator.rollout_returns(p, plan)
        assert returns is not None
        dream = returns.mean(axis=1)
        s_all, p_all = correlations(dream, r)
        s_late, p_late = correlations(dream[late], r[late]) if late.sum() >= 3 else (float("nan"),) * 2
        print(f"tau {tau}: Spearman {s_all:.2f} / Pearson {p_all:.2f} over all; {s_late:.2f} / {p_late:.2f} late")
        for i in np.argsort(-dream)[:5]:
            print(f"  {where[i][0]} generation {where[i][1]}: dream {dream[i]:.1f}, real check {r[i]:.1f}")
        if args.save_best is not None and tau == args.tau[0]:
            i = int(np.argmax(dream))
            controller = Controller(ControllerConfig())
            controller.set_flat(p[i])
            extra = {
                "snapshot_of": where[i][0],
                "generation": where[i][1],
                "memory": str(args.memory),
                "dream_ensemble": [str(m) for m in args.dream_ensemble],
                "chosen_by": "fixed-dream return",
            }
            metrics = {"controller/dream_check_return": float(dream[i])}
            save_checkpoint(args.save_best, controller, kind="controller", config=controller.config, metrics=metrics,
                            extra=extra)  # fmt: skip
            print(f"wrote {args.save_best} ({where[i][0]} generation {where[i][1]})")


if __name__ == "__main__":
    main()
