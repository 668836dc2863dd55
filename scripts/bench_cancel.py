"""How fast Cancel returns control, and what a stage leaves in the app's memory, for every training stage.

Each stage runs through the app's own :class:`explorer.jobs.JobRunner` (the Training panel's runner, in its own
process by default), on real data: it starts, works for ``--work-s`` seconds after its first progress report,
is cancelled, and the script prints the seconds from Cancel until the runner reports the stage ended, and this
process's RSS (the app's side of a stage) before the start, at the end, and after the app's ``release_memory``.

Usage (figures in the README):

    .venv/bin/python scripts/bench_cancel.py --data-dir data/check_agent10 \
        --vision assets/convvae_vision.safetensors --memory assets/convvae_memory.safetensors \
        --latents runs/s14/latents.npz
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.api import (  # noqa: E402
    CollectConfig,
    ControllerTrainConfig,
    EncodeConfig,
    MemoryTrainConfig,
    VisionTrainConfig,
)
from core.stages import stage  # noqa: E402
from explorer.app_support import release_memory  # noqa: E402
from explorer.jobs import JobRunner  # noqa: E402
from explorer.profiler import rss_mb  # noqa: E402


def configs(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One config per stage, each long enough to be still running when it is cancelled."""
    return {
        "collect": CollectConfig(out_dir=tmp / "episodes", episodes=20, workers=2, seed=3),
        "vision": VisionTrainConfig(data_dir=args.data_dir, out=tmp / "vision.safetensors", epochs=50),
        "encode": EncodeConfig(data_dir=args.data_dir, vision=args.vision, out=tmp / "latents.npz"),
        "memory": MemoryTrainConfig(latents=args.latents, out=tmp / "memory.safetensors", epochs=200),
        "controller": ControllerTrainConfig(vision=args.vision, memory=args.memory, latents=args.latents,
                                            out=tmp / "controller.safetensors", generations=1000, threads=1),
    }  # fmt: skip


def measure(key: str, config: Any, runner: str, work_s: float) -> dict[str, float | str]:
    """Start the stage, let it work, cancel it; seconds to return and RSS (MB) around it."""
    release_memory()
    rss_before = rss_mb()
    job = JobRunner(stage(key), runner)  # type: ignore[arg-type]
    job.start(config)
    job.poll_until(lambda j: j.progress is not None or not j.running, 300)
    if job.poll_until(lambda j: not j.running, work_s):
        return {"stage": key, "status": f"ended before the cancel ({job.status}: {job.error})"}
    t0 = time.monotonic()
    job.cancel()
    job.poll_until(lambda j: not j.running, 120, every=0.02)
    cancel_s = time.monotonic() - t0
    rss_end = rss_mb()
    job.join(120)
    release_memory()
    return {"stage": key, "status": job.status, "cancel_s": cancel_s, "rss_before": rss_before,
            "rss_end": rss_end, "rss_released": rss_mb()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="episodes for vision and encode")
    parser.add_argument("--vision", type=Path, required=True)
    parser.add_argument("--memory", type=Path, required=True)
    parser.add_argument("--latents", type=Path, required=True, help="latents for memory and controller")
    parser.add_argument("--runner", choices=["process", "thread"], default="process")
    parser.add_argument("--work-s", type=float, default=5.0, help="seconds of work after the first report")
    parser.add_argument("--stages", nargs="+", default=["collect", "vision", "encode", "memory", "controller"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        all_configs = configs(args, Path(d))
        rows = [measure(key, all_configs[key], args.runner, args.work_s) for key in args.stages]
    print(f"| stage ({args.runner} runner) | cancel -> ended (s) | app RSS before / at the end / released (MB) |")
    print("|---|---|---|")
    for r in rows:
        if "cancel_s" not in r:
            print(f"| {r['stage']} | {r['status']} | - |")
            continue
        print(f"| {r['stage']} | {r['cancel_s']:.2f} ({r['status']}) | "
              f"{r['rss_before']:.0f} / {r['rss_end']:.0f} / {r['rss_released']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
