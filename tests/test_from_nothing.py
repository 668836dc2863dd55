"""scripts/from_nothing.sh: every command it would run is one the CLI accepts, it reads nothing it did not make,
and its stage bookkeeping skips finished stages and counts interrupted attempts in the wall time."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

from core.data.seeds import TRAINING
from core.stages import STAGES
from explorer.cli import _parse

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "from_nothing.sh"


def _script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "R": str(tmp_path / "run"), "DATA": str(tmp_path / "data"), **env}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full, timeout=60)


def _commands(dry_run_output: str) -> list[list[str]]:
    """The dream-explorer commands of a dry run, as argument lists after the subcommand's name."""
    out = []
    for line in dry_run_output.splitlines():
        if not line.startswith("+ ") or "dream-explorer" not in line:
            continue
        words = shlex.split(line[2:])
        words = words[next(i for i, w in enumerate(words) if w.endswith("dream-explorer")) + 1 :]
        out.append(words)
    return out


def test_every_command_parses_and_reads_only_what_the_build_made(tmp_path: Path) -> None:
    result = _script(tmp_path, DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    commands = _commands(result.stdout)
    stages = {s.name: s for s in STAGES}
    names = [c[0] for c in commands]
    assert names == ["collect", "train-vision", "encode", "train-memory", "train-controller", "train-controller"], names
    for words in commands:
        _parse(stages[words[0]].config_cls, words[1:], f"dream-explorer {words[0]}", "")
        for word in words[1:]:  # every file it names is one of its own: no shipped file, no earlier run
            if "/" in word:
                assert word.startswith((str(tmp_path / "run"), str(tmp_path / "data"))), (words[0], word)
    seeds = [int(c[c.index("--seed") + 1]) for c in commands if c[0] == "collect"]
    assert all(seed in TRAINING and seed + 200 in TRAINING for seed in seeds), seeds
    # the first controller is trained from zero in reality; the fine-tune starts from it, checks that start first,
    # and writes the controller the script's header tells the user to evaluate
    controller, finetune = commands[-2:]
    assert controller[controller.index("--out") + 1] == str(tmp_path / "run" / "controller.safetensors")
    assert "--init-controller" not in controller and controller[controller.index("--evaluator") + 1] == "real"
    assert finetune[finetune.index("--init-controller") + 1] == str(tmp_path / "run" / "controller.safetensors")
    assert "--check-init" in finetune and finetune[finetune.index("--evaluator") + 1] == "real"
    assert finetune[finetune.index("--out") + 1] == str(tmp_path / "run" / "controller_ft.safetensors")
    assert "--controller $R/controller_ft.safetensors" in SCRIPT.read_text()


def test_stages_are_skipped_once_done_and_interrupted_time_counts(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake = {"D": "true"}  # every stage "succeeds" at once
    first = _script(tmp_path, **fake)
    assert first.returncode == 0, first.stderr
    lines = (run / "timing.tsv").read_text().splitlines()
    assert len(lines) == 6 and all(line.split("\t")[2] == "done" for line in lines), lines
    second = _script(tmp_path, **fake)
    assert second.stdout.count("done before, skipped") == 6 and (run / "timing.tsv").read_text().count("\n") == 6
    # an attempt killed 600 s after it started, its last heartbeat at 540 s: counted as 540 s, then reported
    (run / ".attempt.extra.start").write_text("1000\n")
    (run / ".attempt.extra.beat").write_text("1540\n")
    report = _script(tmp_path, "report")
    assert "extra" in report.stdout and "interrupted" in report.stdout, report.stdout
    assert (run / "timing.tsv").read_text().splitlines()[-1].split("\t")[:3] == ["extra", "540", "interrupted"]
    total = [line for line in report.stdout.splitlines() if line.startswith("total")]
    assert total and float(total[0].split()[1]) == round(540 / 60, 1), report.stdout
    assert not list(run.glob(".attempt.*"))


def test_a_failed_stage_stops_its_heartbeat_and_counts_as_interrupted(tmp_path: Path) -> None:
    """A stage whose command fails ends the build; its heartbeat ends with it (no loop left behind to go on
    counting), and the next run counts the attempt as interrupted, up to that last heartbeat."""
    run, cli = tmp_path / "run", tmp_path / "failing-cli"
    cli.write_text("#!/bin/sh\nsleep 0.35\nexit 1\n")  # a stage that runs a while, then fails
    cli.chmod(0o755)
    failed = _script(tmp_path, D=str(cli), HEARTBEAT="0.1")
    assert failed.returncode != 0 and not (run / "timing.tsv").exists() and "unbound" not in failed.stderr
    start, beat = (int((run / f".attempt.collect.{f}").read_text()) for f in ("start", "beat"))
    time.sleep(0.5)  # five beats, were it still running
    assert int((run / ".attempt.collect.beat").read_text()) == beat
    assert _script(tmp_path, "report").returncode == 0
    assert (run / "timing.tsv").read_text().split("\t")[:3] == ["collect", str(beat - start), "interrupted"]
