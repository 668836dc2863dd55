"""Frame rate of the explorer, headless: the app runs ``--frames N --profile`` with the autopilot driving, for each
world model and mode (and each variant of extra flags, run in alternation), and the figures of its ``--profile``
report are tabled (the median over ``--repeats``).

.venv/bin/python scripts/bench_explorer.py                                   # both world models, 3 modes
.venv/bin/python scripts/bench_explorer.py --kinds dds_vae --modes split --repeats 3
.venv/bin/python scripts/bench_explorer.py --modes split --variants stage-runner=thread stage-runner=process \\
    --stage vision \\
    --stage-set data_dir=data/episodes epochs=1 out=/tmp/v.safetensors    # FPS while the panel trains V

Without a DISPLAY each run goes through ``xvfb-run``. The machine's load shows in every figure: compare variants
of one run (they alternate), not runs made at different times.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tyro

from explorer.profiler import parse_report

COLUMNS = ("fps", "frame", "frame_p95", "model", "env", "gui", "cpu")


@dataclass(frozen=True)
class BenchArgs:
    """Benchmark the explorer's frame rate per world model and mode."""

    frames: int = 300
    """Frames per run (the report leaves out the first 30)."""
    repeats: int = 1
    """Runs per configuration; the table shows the median."""
    kinds: tuple[str, ...] = ("conv_vae", "dds_vae")
    """World models (--vision-kind)."""
    modes: tuple[str, ...] = ("dream", "real", "split")
    """Modes (--mode)."""
    variants: tuple[str, ...] = ("",)
    """Extra app flags per variant, each one string of flag=value without the dashes (e.g. "stage-runner=thread"
    "stage-runner=process"; "" for none)."""
    stage: str | None = None
    """Start this Training-panel stage at the first frame (--start-stage) and measure while it runs."""
    stage_set: tuple[str, ...] = ()
    """The stage's settings, as field=value (value as JSON when it parses, else text), e.g. epochs=1."""
    width: int = 1280
    """Window width."""
    height: int = 800
    """Window height."""


def stage_settings(stage: str, pairs: tuple[str, ...]) -> dict[str, object]:
    """The settings file content that gives ``stage`` the ``field=value`` pairs. Raises SystemExit on a bad pair."""
    draft: dict[str, object] = {}
    for pair in pairs:
        field, sep, text = pair.partition("=")
        if not sep or not field:
            raise SystemExit(f"error: --stage-set {pair!r} is not field=value")
        try:
            draft[field] = json.loads(text)
        except ValueError:
            draft[field] = text
    return {"stages": {stage: draft}}


def variant_flags(variant: str) -> list[str]:
    """``"stage-runner=thread tau=0"`` -> ``["--stage-runner", "thread", "--tau", "0"]``."""
    flags = []
    for token in shlex.split(variant):
        name, sep, value = token.partition("=")
        flags += [f"--{name}", value] if sep else [f"--{name}"]
    return flags


def run_once(args: BenchArgs, kind: str, mode: str, variant: str) -> dict[str, float]:
    """One app run; its --profile figures. Raises RuntimeError with the app's last output line when it fails."""
    app = [sys.executable, "-m", "explorer.cli", "--vision-kind", kind, "--mode", mode, "--driver", "autopilot",
           "--frames", str(args.frames), "--profile", "--width", str(args.width), "--height", str(args.height),
           *variant_flags(variant)]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_explorer_") as settings:
        if args.stage:
            Path(settings, "explorer.json").write_text(json.dumps(stage_settings(args.stage, args.stage_set)))
            app += ["--settings", settings, "--start-stage", args.stage]
        if not os.environ.get("DISPLAY"):
            if shutil.which("xvfb-run") is None:
                raise SystemExit("error: no DISPLAY and no xvfb-run: install xvfb (see README) or run in a desktop")
            app = ["xvfb-run", "-a", "-s", f"-screen 0 {args.width}x{args.height}x24", *app]
        done = subprocess.run(app, capture_output=True, text=True, check=False)
    try:
        return parse_report(done.stdout)
    except ValueError as exc:
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"{kind} {mode} {variant!r}: {exc} (exit {done.returncode}: {last})") from exc


def main() -> None:
    args = tyro.cli(BenchArgs)
    runs: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for repeat in range(args.repeats):
        for kind in args.kinds:
            for mode in args.modes:
                for variant in args.variants:  # variants alternate, so a load swing hits them alike
                    figures = run_once(args, kind, mode, variant)
                    runs.setdefault((kind, mode, variant), []).append(figures)
                    print(f"[{repeat + 1}/{args.repeats}] {kind} {mode} {variant}: {figures['fps']:.1f} FPS, "
                          f"model {figures['model']:.1f} ms, gui {figures['gui']:.1f} ms, cpu {figures['cpu']:.1f} ms",
                          file=sys.stderr, flush=True)  # fmt: skip
    print(f"\nexplorer, {args.frames} frames per run, autopilot, {args.width}x{args.height}, median of "
          f"{args.repeats}" + (f", while the {args.stage} stage runs" if args.stage else ""))  # fmt: skip
    print("| world model | mode | variant | FPS | frame ms | p95 ms | model ms | env ms | gui ms | cpu ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (kind, mode, variant), repeats in runs.items():
        med = {key: statistics.median(f[key] for f in repeats) for key in COLUMNS}
        print(f"| {kind} | {mode} | {variant or '-'} | " + " | ".join(f"{med[k]:.1f}" for k in COLUMNS) + " |")


if __name__ == "__main__":
    main()
