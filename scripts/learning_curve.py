"""Learning curves in real experience: a controller run's real-check return against the real-env steps it has
spent, read from the metrics logs ``train-controller`` writes beside its checkpoint (``<out>.metrics.jsonl``).

Each real check is one row: the generation, ``controller/real_env_steps`` (every real-env step the run took so far:
real-evaluator rollouts and the checks themselves), the check's mean return (``controller/real_return``, the
generation's best candidate on the real check tracks) and the best check so far (what the run keeps). A dream run
spends real steps only on its checks; a real-env CMA-ES run spends them on every candidate's rollout as well.

    .venv/bin/python scripts/learning_curve.py runs/real.metrics.jsonl:real runs/dream.metrics.jsonl:dream

Exit 2 with one line: a log that cannot be read, is not a metrics log, or has no real check.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from core.errors import DreamExplorerError
from core.metrics_log import read_metrics_log


@dataclass(frozen=True)
class CurveArgs:
    """Print the learning curves of controller runs in real-env steps."""

    logs: tyro.conf.Positional[tuple[str, ...]]
    """Metrics logs, each ``PATH`` or ``PATH:LABEL`` (the label defaults to the file's stem)."""
    budgets: tuple[int, ...] = (25_000, 50_000, 100_000, 200_000, 400_000)
    """Real-env step budgets for the summary: the best check each run had reached within each."""


@dataclass(frozen=True)
class Check:
    generation: int
    real_env_steps: int
    real_return: float


def read_checks(path: Path) -> list[Check]:
    """The real checks of one run, in order (through the project's log reader).

    Raises:
        DreamExplorerError: the log cannot be read, or has no real check with its real-env steps.
    """
    curves = read_metrics_log(path)
    returns = curves.get("controller/real_return", ([], []))
    steps = dict(zip(*curves.get("controller/real_env_steps", ([], [])), strict=True))
    checks = [Check(int(g), int(steps[g]), r) for g, r in zip(*returns, strict=True) if g in steps]
    if not checks:
        raise DreamExplorerError(f"{path} has no real check with its real-env steps (train-controller logs them "
                                 "from session 14 on)")  # fmt: skip
    return checks


def curve_table(label: str, checks: list[Check]) -> list[str]:
    """Markdown rows: label, generation, real-env steps, check return, best so far."""
    rows, best = [], -math.inf
    for c in checks:
        best = max(best, c.real_return)
        rows.append(f"| {label} | {c.generation} | {c.real_env_steps:,} | {c.real_return:.1f} | {best:.1f} |")
    return rows


def best_within(checks: list[Check], budget: int) -> float:
    """The best check return among the checks made within ``budget`` real-env steps (NaN if none)."""
    returns = [c.real_return for c in checks if c.real_env_steps <= budget]
    return max(returns) if returns else math.nan


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(CurveArgs, args=argv)
    runs: list[tuple[str, list[Check]]] = []
    try:
        for spec in args.logs:
            path, _, label = spec.partition(":")
            runs.append((label or Path(path).name.removesuffix(".metrics.jsonl"), read_checks(Path(path))))
    except DreamExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| run | generation | real-env steps | check return | best so far |")
    print("|---|---|---|---|---|")
    for label, checks in runs:
        print("\n".join(curve_table(label, checks)))
    print()
    print("| run | " + " | ".join(f"best within {b:,} steps" for b in args.budgets) + " |")
    print("|---|" + "---|" * len(args.budgets))
    for label, checks in runs:
        cells = [best_within(checks, b) for b in args.budgets]
        print(f"| {label} | " + " | ".join("-" if math.isnan(v) else f"{v:.1f}" for v in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
