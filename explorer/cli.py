"""The ``dream-explorer`` command: with no subcommand it opens the explorer; subcommands run the stages of
:data:`core.stages.STAGES` (flags from each stage's config), with a progress bar and a report of what they
returned. It sits above both packages: it imports ``core`` and opens :mod:`explorer.app`."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import tyro
from tqdm import tqdm

from core.errors import DreamExplorerError, DreamExplorerWarning
from core.progress import Progress


class TqdmProgress:
    """Feeds :class:`Progress` reports to a tqdm bar (on stderr) and prints stage messages. Once the terminal
    is gone (a hang-up: writes fail), it stays silent instead of failing the stage."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.bar: tqdm | None = None
        self.silent = False

    def __call__(self, p: Progress) -> None:
        if self.silent:
            return
        try:
            self._show(p)
        except OSError:
            self.silent = True

    def _show(self, p: Progress) -> None:
        if self.bar is None or self.bar.total != p.total:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=p.total, desc=self.desc, dynamic_ncols=True, file=sys.stderr)
        if p.step >= self.bar.n:
            self.bar.update(p.step - self.bar.n)
        else:
            self.bar.n = p.step
        if p.metrics:
            short = {k.rsplit("/", 1)[-1] if k.count("/") < 2 else k.split("/", 1)[1]: v for k, v in p.metrics.items()}
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(short.items())[:5]}, refresh=False)
        self.bar.refresh()
        if p.message:
            self.bar.write(f"[{p.stage}] {p.message}", file=sys.stderr)

    def write(self, line: str) -> None:
        if self.silent:
            return
        try:
            (self.bar.write if self.bar is not None else print)(line, file=sys.stderr)
        except OSError:
            self.silent = True

    def close(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()
            except OSError:
                self.silent = True


EXIT_BAD_INPUT = 2
"""Exit code of bad input (a file, a flag, a combination): one ``error:`` line, nothing overwritten."""
EXIT_STOPPED = 130
"""Exit code of a run stopped by SIGINT / SIGTERM / SIGHUP (whatever it printed is labelled partial)."""

_stopped = threading.Event()
"""Set by the signal handler of :func:`_run_stage`: the stage was stopped before it finished."""


def _run_stage(name: str, fn: Callable[..., Any], config: Any) -> Any:
    """Run a stage with a progress bar. The first Ctrl-C (or SIGTERM or SIGHUP, e.g. a closed terminal) sets
    the stop flag: the stage saves what it has, shuts its worker processes down and returns, and :func:`main`
    exits with :data:`EXIT_STOPPED`; a second one interrupts at once."""
    bar = TqdmProgress(name)
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        _stopped.set()
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        bar.write(f"[{name}] stopping after the current step (Ctrl-C again to abort)")

    previous = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return fn(config, on_progress=bar, should_stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()


def report_collect(config: Any, summaries: Any) -> None:
    n = len(summaries)
    if _stopped.is_set():
        print(f"stopped early (partial): recorded {n} episodes in {config.out_dir}; run again to record the rest")
    elif n:
        mean = sum(s.episode_return for s in summaries) / n
        steps = sum(s.steps for s in summaries)
        print(f"recorded {n} episodes ({steps} steps, mean return {mean:.1f}) in {config.out_dir}")
    else:
        print(f"nothing to do: all {config.episodes} episodes already in {config.out_dir}")


def report_iterate(config: Any, result: Any) -> None:
    from core.train.iterate import format_rounds

    _print_metrics(result)
    if result.history:
        print(format_rounds(result.history))


def report_evaluate(config: Any, result: Any) -> None:
    from core.evaluate import histogram

    if result.results_path is not None:  # stdout stays the report, or the one JSON object with --json
        print(f"per-track results: {result.results_path}", file=sys.stderr)
    if config.json:
        print(json.dumps(dict(result.as_json(), partial=_stopped.is_set() or len(result.returns) < config.episodes)))
        return
    for title, res in (("controller", result), ("V-only baseline (z without h)", result.v_only)):
        if res is None or not res.returns:
            continue
        r = res.returns
        partial = f" (partial: stopped after {len(r)} of {config.episodes})" if len(r) < config.episodes else ""
        print(
            f"{title}: {len(r)} held-out tracks{partial} (seeds {res.seeds[0]}..{res.seeds[-1]}) in {res.seconds:.0f} s"
        )
        print(f"return {res.mean:.1f} +- {res.std:.1f}  min {min(r):.1f}  max {max(r):.1f}")
        print(histogram(r))
    if config.v_only is not None and result.v_only is None:
        print("V-only baseline: not run (stopped before it)")


def report_compare_vision(config: Any, figures: Any) -> None:
    if config.json:
        print(json.dumps(figures))
        return
    for k, v in figures.items():
        print(f"  {k} = {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    print(f"wrote {config.grid}")


def report_divergence(config: Any, result: Any) -> None:
    from core.divergence_table import format_table

    if config.json:
        print(json.dumps(dict(result.metrics, partial=_stopped.is_set())))
        return
    if _stopped.is_set():
        print("stopped early (partial): the figures cover the episodes measured before the stop")
    print(format_table(result.metrics, config.horizons))


def report_bench(config: Any, figures: Any) -> None:
    from core.bench import format_figures

    print(json.dumps(figures) if config.json else format_figures(figures))


REPORTS: dict[str, Callable[[Any, Any], None]] = {
    "collect": report_collect, "iterate": report_iterate, "evaluate": report_evaluate,
    "compare-vision": report_compare_vision, "divergence": report_divergence, "bench": report_bench,
}  # fmt: skip
"""How a stage's result is printed, by CLI name; the others print their checkpoint and metrics."""


def _print_metrics(result: Any) -> None:
    if getattr(result, "cancelled", False) or _stopped.is_set():
        print("stopped early (partial): the checkpoint holds the last finished step; --resume continues")
    if getattr(result, "checkpoint", None):
        print(f"wrote {result.checkpoint}")
    for k, v in sorted(getattr(result, "metrics", {}).items()):
        print(f"  {k} = {v:.6g}")
    if getattr(result, "seconds", 0):
        print(f"  time = {result.seconds:.1f} s")


def _config_classes(cls: type) -> list[type]:
    """``cls`` and every config dataclass nested in its fields (e.g. iterate's controller and memory settings)."""
    import dataclasses
    import typing

    found = [cls]
    for hint in typing.get_type_hints(cls).values():
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            found += [c for c in _config_classes(hint) if c not in found]
    return found


def _checked(value: Any) -> Any:
    """Rebuild a config (and the configs nested in it) through its constructor, which runs its checks."""
    import dataclasses

    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    return type(value)(**{f.name: _checked(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init})


def _parse(config_cls: type, args: list[str], prog: str, description: str) -> Any:
    """Parse ``args`` into ``config_cls``. While tyro parses, the configs' ``__post_init__`` checks are switched
    off (tyro would draw its own multi-line box around a check's message); the parsed config is then rebuilt
    through the real constructors, nested configs included, so a value out of range raises
    :class:`ConfigError` for the one-line report in :func:`main`.

    Raises:
        ConfigError: a value outside its documented range (or non-finite).
        SystemExit: ``--help`` or a flag tyro cannot parse (tyro prints the usage).
    """
    classes = _config_classes(config_cls)
    checks = {cls: cls.__dict__.get("__post_init__") for cls in classes}
    try:
        for cls, check in checks.items():
            if check is not None:
                cls.__post_init__ = lambda self: None  # type: ignore[attr-defined]
        parsed: Any = tyro.cli(config_cls, args=args, prog=prog, description=description)
    finally:
        for cls, check in checks.items():
            if check is not None:
                cls.__post_init__ = check  # type: ignore[attr-defined]
    return _checked(parsed)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dream-explorer``. Returns the process exit code: 2 on bad input, 130 when stopped, 141 (a
    shell's code for SIGPIPE) when the reader of stdout went away, e.g. ``dream-explorer iterate --help | head``,
    with no traceback."""
    try:
        return _main(argv)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more reaches the closed pipe
        return 141


def _main(argv: list[str] | None) -> int:
    from core.stages import STAGES

    args = list(sys.argv[1:] if argv is None else argv)
    commands = {s.name: s for s in STAGES}
    if not args or args[0] not in commands and args[0] not in ("-h", "--help"):
        from explorer.app import main as app_main

        try:
            return app_main(args)
        except DreamExplorerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args[0] in ("-h", "--help"):
        print("usage: dream-explorer [APP FLAGS] | dream-explorer {" + ",".join(commands) + "} [--help]\n")
        print("With no subcommand, opens the explorer app (see `dream-explorer app-help`).\n\nsubcommands:")
        for name, spec in commands.items():
            print(f"  {name:18s} {spec.help}")
        return 0
    name = args[0]
    spec = commands[name]
    _stopped.clear()
    show = warnings.showwarning

    def one_line_warning(message: Any, category: type[Warning], *rest: Any, **kw: Any) -> None:
        if issubclass(category, DreamExplorerWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *rest, **kw)

    warnings.showwarning = one_line_warning
    try:
        config = _parse(spec.config_cls, args[1:], f"dream-explorer {name}", spec.help)
        result = _run_stage(name, spec.run, config)
        REPORTS.get(name, lambda _, r: _print_metrics(r))(config, result)
    except DreamExplorerError as exc:
        if _stopped.is_set():  # e.g. encode stopped before it wrote anything
            print(f"stopped: {exc}", file=sys.stderr)
            return EXIT_STOPPED
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted (partial: nothing after the last checkpoint is kept)", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        warnings.showwarning = show
    return EXIT_STOPPED if _stopped.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
