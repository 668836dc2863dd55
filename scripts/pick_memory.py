"""Pick one MDN-RNN among several draws (seeds, epochs, data) by how its dream holds the road open loop.

An M's draw moves the dream's road tracking by 10-30 points at 100 steps (docs/history.md, sessions 21-22), and the
teacher-forced validation loss does not tell the draws apart. This runs ``dream-explorer divergence`` for each M
on each check set (open loop, fed reality's actions; no parked or steering measurements), prints one row per M and
names the one with the highest score: the mean over the check sets of the share of dreams whose road share stays
within +-50% of reality's at ``--score-horizons`` (issue 13's measure). Pixel error at the longest of those
horizons is printed beside it as a share of standing still's (the copy baseline), not scored. With ``--coast`` each
row also gives, per check set, the dream's return for coasting (the recorded steering, no gas) over its return for
the recorded actions, and reality's (``divergence --coast``; costs a replay of the track per window): a dream whose
ratio is at or above 1 pays a driver for leaving the gas (docs/history.md, session 23). Not scored either.

Usage (figures in docs/history.md, session 23):

    .venv/bin/python scripts/pick_memory.py --vision runs/s21/v_tw0.15.safetensors \\
        --memories runs/s21/m_tw0.15.safetensors runs/s23/m_seed1.safetensors \\
        --check-dirs data/check_agent10 data/check_random10
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.divergence import DivergenceConfig, dream_divergence  # noqa: E402


def score(metrics_by_set: dict[str, dict[str, float]], horizons: tuple[int, ...]) -> float:
    """Mean of ``divergence/road_tracked@k`` over check sets and horizons k, in [0, 1].

    Raises:
        KeyError: a horizon that was not measured.
    """
    values = [m[f"divergence/road_tracked@{k}"] for m in metrics_by_set.values() for k in horizons]
    return sum(values) / len(values)


def coast_ratios(metrics: dict[str, float], horizon: int) -> str:
    """``"dream D / real R"``: coasting's return over the recorded actions' over ``horizon`` steps, in the dream
    and in reality (``divergence --coast`` metrics); ``"-"`` where no window was replayed, or where the recorded
    actions earn nothing (random-policy episodes: a ratio of two losses says nothing about the pedal)."""
    names = ("coast_reward_dream", "coast_recorded_dream", "coast_reward_real", "coast_recorded_real")
    values = [metrics.get(f"divergence/{name}@{horizon}") for name in names]
    if any(v is None for v in values):
        return "-"
    coast_dream, recorded_dream, coast_real, recorded_real = (float(v) for v in values)  # type: ignore[arg-type]
    if recorded_dream <= 0.0 or recorded_real <= 0.0:
        return "-"
    return f"dream {coast_dream / recorded_dream:.2f} / real {coast_real / recorded_real:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vision", type=Path, required=True, help="the V every M was trained on")
    parser.add_argument("--memories", type=Path, nargs="+", required=True, help="MDN-RNN checkpoints to compare")
    parser.add_argument("--check-dirs", type=Path, nargs="+", required=True, help="held-out episode directories")
    parser.add_argument("--score-horizons", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--max-episodes", type=int, default=5, help="episodes per check set (0: all)")
    parser.add_argument("--start-every", type=int, default=100, help="a dream starts every this many real steps")
    parser.add_argument("--tau", type=float, default=0.5, help="dream temperature (the app's default: 0.5)")
    parser.add_argument("--coast", action="store_true", help="also print the coasting ratios (replays the tracks)")
    parser.add_argument("--json", type=Path, default=None, help="also write every M's metrics to this file")
    args = parser.parse_args(argv)
    horizons = tuple(sorted({10, 30, *args.score_horizons}))
    results: dict[str, dict[str, dict[str, float]]] = {}
    for memory in args.memories:
        results[str(memory)] = {}
        for check_dir in args.check_dirs:
            config = DivergenceConfig(
                data_dir=check_dir, vision=args.vision, memory=memory, horizons=horizons,
                start_every=args.start_every, tau=args.tau, max_episodes=args.max_episodes, parked=False, steer=False,
                coast=args.coast,
            )  # fmt: skip
            metrics = dream_divergence(config).metrics
            results[str(memory)][str(check_dir)] = metrics
            print(f"[pick_memory] {memory} on {check_dir}: tracked " + " / ".join(
                f"{metrics[f'divergence/road_tracked@{k}']:.0%} @{k}" for k in horizons), flush=True)  # fmt: skip
    score_horizons = tuple(args.score_horizons)
    last = max(score_horizons)
    sets = [str(d) for d in args.check_dirs]
    print("\nroad tracked (share of dreams within +-50% of reality's road share) per check set, and pixel MSE of the "
          f"dream / standing still's at {last} steps")  # fmt: skip
    coast_titles = [f"{Path(s).name + ' coast':>20}" for s in sets] if args.coast else []
    print(f"{'memory':<48} " + " ".join(f"{Path(s).name + ' @' + str(k):>20}" for s in sets for k in score_horizons)
          + " " + " ".join(f"{Path(s).name + ' pixel':>20}" for s in sets) + " ".join([""] + coast_titles)
          + f" {'score':>7}")  # fmt: skip
    scores = {}
    for memory, by_set in results.items():
        scores[memory] = score(by_set, score_horizons)
        tracked = [f"{by_set[s][f'divergence/road_tracked@{k}']:>20.0%}" for s in sets for k in score_horizons]
        pixel = [f"{by_set[s][f'divergence/pixel_mse_dream@{last}'] / by_set[s][f'divergence/pixel_mse_copy@{last}']:>20.2f}"
                 for s in sets]  # fmt: skip
        coast = [f"{coast_ratios(by_set[s], max(horizons)):>20}" for s in sets] if args.coast else []
        print(f"{memory:<48} " + " ".join(tracked) + " " + " ".join(pixel) + " ".join([""] + coast)
              + f" {scores[memory]:>7.3f}")  # fmt: skip
    best = max(scores, key=lambda m: scores[m])
    print(f"\npicked: {best} (score {scores[best]:.3f})")
    if args.json is not None:
        args.json.write_text(json.dumps({"results": results, "scores": scores, "picked": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
