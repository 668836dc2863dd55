"""Dream vs real-env CMA-ES fitness throughput, measured in one run (target: dream >= 100x real).

.venv/bin/python scripts/bench_controller.py                       # untrained full-size V and M
.venv/bin/python scripts/bench_controller.py --vision runs/vision.safetensors --memory runs/memory.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from core.train.fitness_bench import bench_evaluators


@dataclass(frozen=True)
class BenchArgs:
    """Benchmark the dream and the real fitness evaluators of `train-controller`."""

    vision: Path | None = None
    """Vision checkpoint (default: an untrained full-size ConvVAE)."""
    memory: Path | None = None
    """MDN-RNN checkpoint (default: an untrained full-size MDN-RNN whose done head never fires)."""
    population: int = 64
    """CMA-ES candidates in the dream generation."""
    rollouts: int = 16
    """Rollouts per candidate in the dream generation."""
    max_steps: int = 1000
    """Steps per rollout, dream and real."""
    real_rollouts: int = 4
    """Real episodes timed (on --workers processes)."""
    workers: int = 2
    """Real-env worker processes."""
    threads: int = 2
    """Torch threads stepping the dream (1 is faster when other work shares the cores)."""


def main() -> None:
    args = tyro.cli(BenchArgs)
    r = bench_evaluators(
        args.vision, args.memory, population=args.population, rollouts=args.rollouts, max_steps=args.max_steps,
        real_rollouts=args.real_rollouts, workers=args.workers, threads=args.threads,
    )  # fmt: skip
    n = args.population * args.rollouts
    print(f"dream: {args.population} x {args.rollouts} rollouts x {args.max_steps} steps ({args.threads} threads) in "
          f"{r['bench/dream_generation_s']:.1f} s -> {r['bench/dream_rollouts_per_s']:.1f} candidate-rollouts/s "
          f"({n} rollouts per generation)")  # fmt: skip
    print(
        f"real:  {args.real_rollouts} rollouts x {args.max_steps} steps on {args.workers} workers, "
        f"{r['bench/real_seconds_per_rollout']:.1f} s each -> {r['bench/real_rollouts_per_s']:.3f} candidate-rollouts/s"
    )
    print(f"dream / real: {r['bench/speedup']:.0f}x (target >= 100x); a real generation of {n} rollouts would take "
          f"{n / r['bench/real_rollouts_per_s'] / 60:.0f} min")  # fmt: skip


if __name__ == "__main__":
    main()
