"""The app's pieces around the frame loop: its flags (:class:`AppConfig`), the docking layout, the style, the
settings file, the status bar's notices, the log handlers, releasing a finished stage's memory, and the screenshot
path check."""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import tyro
from imgui_bundle import hello_imgui, imgui, immapp

from explorer.jobs import JobRunner, summarize
from explorer.panels import controls, inside, models, telemetry, training, view
from explorer.panels.widgets import GREY, ORANGE, RED
from explorer.profiler import FrameClock, rss_mb

log = logging.getLogger("explorer")

NOTICE_SECONDS = {logging.INFO: 8.0, logging.WARNING: 30.0, logging.ERROR: 60.0}
"""How long the status bar shows the latest log line, by its level."""
SETTINGS_DEPTH = 8
"""Nesting levels a settings file may have (explorer.json has 4); deeper files are refused whole."""


def setup_style() -> None:
    """Dark theme; transparent window backgrounds over an opaque clear colour (a big speed-up with software GL:
    every docked window would otherwise blend a full-size rectangle each frame)."""
    hello_imgui.imgui_default_settings.setup_default_imgui_style()
    theme = hello_imgui.ImGuiTweakedTheme()
    theme.theme = hello_imgui.ImGuiTheme_.darcula_darker
    theme.tweaks.rounding = 4.0
    hello_imgui.apply_tweaked_theme(theme)
    style = imgui.get_style()
    bg = style.color_(imgui.Col_.window_bg)
    hello_imgui.get_runner_params().imgui_window_params.background_color = imgui.ImVec4(bg.x, bg.y, bg.z, 1.0)
    for col in (imgui.Col_.window_bg, imgui.Col_.child_bg, imgui.Col_.docking_empty_bg):
        style.set_color_(col, imgui.ImVec4(0, 0, 0, 0))
    style.item_spacing = imgui.ImVec2(6, 5)


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of JSON data, counted up to ``limit + 1``."""
    if limit < 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(v, limit - 1) for v in children), default=0)


def read_settings_file(path: Path) -> tuple[dict[str, Any], str]:
    """The settings in ``path`` (a JSON object), or ``({}, why)`` when it cannot be one: not a file, unreadable,
    not JSON, not an object, or nested deeper than SETTINGS_DEPTH. Never raises."""
    if not path.is_file():
        return {}, "not a file"
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except RecursionError:
        return {}, "nested too deeply"
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"unreadable: {getattr(exc, 'strerror', None) or exc}"
    except ValueError as exc:
        return {}, f"not JSON: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict):
        return {}, f"a JSON {type(data).__name__}, not an object"
    if _depth(data, SETTINGS_DEPTH) > SETTINGS_DEPTH:
        return {}, "nested too deeply"
    return data, ""


class Notices(logging.Handler):
    """Keeps the explorer's latest log line (its first line) for the status bar, until it expires: info after a
    few seconds, warnings and errors later (NOTICE_SECONDS), or a newer line of at least its level comes."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.latest: tuple[int, str, float] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        shown = self.current()
        if shown is not None and record.levelno < shown[0]:
            return  # a warning or error stays until it expires or a newer one comes
        lines = record.getMessage().strip().splitlines()
        seconds = NOTICE_SECONDS[max(lv for lv in NOTICE_SECONDS if lv <= max(record.levelno, logging.INFO))]
        self.latest = (record.levelno, lines[0] if lines else "", time.monotonic() + seconds)

    def current(self) -> tuple[int, str] | None:
        """(level, text) of the line to show, or None once it has expired."""
        if self.latest is None or time.monotonic() > self.latest[2]:
            self.latest = None
            return None
        return self.latest[0], self.latest[1]


def release_memory() -> None:
    """Hand the memory a finished stage freed back to the system (glibc keeps freed heap pages otherwise)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def log_stage_end(job: JobRunner) -> None:
    """Say in the main log how a stage ended (done, cancelled or failed); the stage's own log has the details."""
    title = job.spec.title
    if job.status == "done":
        log.info("%s done: %s", title, summarize(job.result))
    elif job.status == "cancelled":
        what = summarize(job.result) if job.result is not None else "nothing finished"
        log.warning("%s cancelled (partial: %s)", title, what)
    elif job.status == "failed":
        log.error("%s failed: %s", title, job.error)


class _HelloImguiLog(logging.Handler):
    """Forwards the explorer's log records to hello_imgui's Log panel."""

    LEVELS = {
        logging.DEBUG: "debug",
        logging.INFO: "info",
        logging.WARNING: "warning",
        logging.ERROR: "error",
    }

    def emit(self, record: logging.LogRecord) -> None:
        level = getattr(hello_imgui.LogLevel, self.LEVELS.get(record.levelno, "error"))
        hello_imgui.log(level, self.format(record))


def unwritable(path: Path) -> str:
    """Why a file cannot be written at ``path`` ("" when it can, as far as one can tell before writing)."""
    if path.is_dir():
        return "it is a directory"
    if not cv2.haveImageWriter(str(path)):
        return "no image format for this name (use .png)"
    parent = path.parent
    while not parent.exists():  # the first existing ancestor must let us create the rest
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "permission denied"
    return ""


@dataclass(frozen=True)
class AppConfig:
    """Flags of the Dream Explorer app (``dream-explorer`` with no subcommand). Unset flags marked "last" take
    the value of the previous run (saved in the settings directory), else the built-in default."""

    assets: Path | None = None
    """Directory of the shipped checkpoints (unset: the package's assets/)."""
    vision_kind: Literal["conv_vae", "dds_vae"] | None = None
    """Shipped world model: Ha's ConvVAE or the DDS+VAE (unset: last, else conv_vae)."""
    vision: Path | None = None
    """Vision checkpoint (overrides the shipped one)."""
    memory: Path | None = None
    """MDN-RNN checkpoint (overrides the shipped one)."""
    controller: Path | None = None
    """Controller checkpoint (overrides the shipped one)."""
    mode: Literal["real", "dream", "split"] | None = None
    """Real env, dream, or both side by side fed the same actions (unset: last, else split)."""
    driver: Literal["human", "autopilot", "random"] = "human"
    """Who drives at start; any driving key takes the wheel from the autopilot or the random driver."""
    tau: float | None = None
    """MDN temperature of the dream, 0 (deterministic: the MDN's mode) to 2.0 (unset: last, else 0.5)."""
    seed: int | None = None
    """Track seed of the real env (unset: last, else 0)."""
    horizon: int | None = None
    """Dream steps before the dream restarts; split mode re-syncs with reality (unset: last, else 300)."""
    futures: int | None = None
    """Dreams batched from one state, shown in the Futures grid, 1 to 16 (unset: last, else 1: each grounded dream
    costs V's decode and encode and its map at every step)."""
    data_dir: Path | None = None
    """Dataset directory: dream start frames, recorded episodes (unset: last, else data/episodes)."""
    frames: int = 0
    """Exit after this many frames (0: when the window closes); the headless smoke run, implies --fresh."""
    screenshot: Path | None = None
    """Save the last frame to this PNG on exit."""
    profile: bool = False
    """Print the frame-time breakdown (model, env, GUI) and memory on exit; no frame-rate cap."""
    width: int = 1280
    """Window width in pixels."""
    height: int = 800
    """Window height in pixels."""
    settings: Path | None = None
    """Settings directory with layout.ini and explorer.json (unset: ~/.config/dream-explorer)."""
    fresh: bool = False
    """Start from the default layout and settings, and save nothing."""
    max_fps: float | None = None
    """Frame-rate cap; 0: none (unset: 50 = real time, none with --frames or --profile)."""
    vision_runtime: Literal["onnxruntime", "pytorch"] = "onnxruntime"
    """Where V's encode and decode run: ONNX Runtime (exported once per model into ~/.cache/dream-explorer/onnx,
    checked against PyTorch; PyTorch where that fails) or PyTorch."""
    vision_bf16: bool = True
    """A DDS+VAE decodes its pictures in bfloat16 where this CPU computes that faster than float32 (checked against
    float32 at start); --no-vision-bf16 keeps float32. Encoding stays float32."""
    vision_threads: int | None = None
    """V's threads in dream and real mode while no stage runs (unset: 2 for a DDS+VAE, 1 for a ConvVAE, whose small
    calls do not gain; 1 keeps V on the frame's thread)."""
    ground_dream: bool = True
    """A dream that starts from reality drives its car on CarRacing's own car physics over a map of the ground it
    has shown, paid by CarRacing's reward rule for the road it covers, and ended with its -100 off the playfield
    (the Controls panel switches it); --no-ground-dream: M's dream alone, paid by M's reward head."""
    parallel_split: bool = True
    """Split mode steps the dream (MDN-RNN, V's decode) on a second thread beside the real env step and V's encode;
    --no-parallel-split runs them one after the other."""
    pipeline: bool = True
    """Run the step the next frame shows on a thread of its own while this frame is swapped to the screen (keys
    read just before the step starts: no frame of input lag); --no-pipeline steps at the frame's start."""
    stage_runner: Literal["process", "thread"] = "process"
    """Where Training-panel stages run: their own process (the GUI keeps its core and frame rate) or a thread of
    the app (starts faster; shares the interpreter lock and torch settings with the frame loop)."""
    stage_priority: Literal["idle", "low"] = "idle"
    """CPU priority of Training-panel stages: idle (Linux's SCHED_IDLE: a stage uses only what the frame loop
    leaves, so the GUI's frame rate stays near what it is without a stage and the stage slows) or low (nice 5: the
    cores are shared, weighted about 3:1 for the GUI)."""
    start_stage: str | None = None
    """Start this Training-panel stage (collect, vision, encode, memory, ...) at the first frame, with the panel's
    settings (saved ones with --settings): a scripted start, e.g. to measure the frame rate while a stage runs."""


def parse_flags(argv: list[str]) -> AppConfig:
    """Parse the app's flags (``app-help`` is an alias of ``--help``). Raises SystemExit on --help or errors."""
    args = ["--help" if a == "app-help" else a for a in argv]
    return tyro.cli(AppConfig, args=args, prog="dream-explorer",
                    description="Dream Explorer: drive CarRacing-v3 in reality and in the dream.")  # fmt: skip


def flag_problem(config: AppConfig, stages: list[str]) -> str | None:
    """Why the flags cannot run (one line: a --start-stage that is no stage, --vision-threads below 1, a screenshot
    path that cannot be written), or None."""
    if config.start_stage is not None and config.start_stage not in stages:
        return f"--start-stage {config.start_stage!r} is not a stage (one of: {', '.join(stages)})"
    if config.vision_threads is not None and config.vision_threads < 1:
        return f"--vision-threads must be at least 1, got {config.vision_threads}"
    if config.screenshot is not None:
        problem = unwritable(config.screenshot)
        if problem:
            return f"cannot write the screenshot {config.screenshot}: {problem}"
    return None


def docking_layout(panel: Callable[[Callable[[Any], None]], Callable[[], None]]) -> hello_imgui.DockingParams:
    """The default docking layout (the user's changes are kept in layout.ini); ``panel`` wraps a ``gui_*`` function
    into the window's callback.

    ::

        +-----------+---------------------------+-------------+
        | Controls  |  View                     |  Latent     |
        |           |                           |             |
        +-----------+---------------------------+-------------+
        | Models,   |  Telemetry, Training, Log |  Vision,    |
        | Record    |                           |  Futures    |
        +-----------+---------------------------+-------------+
    """

    def split(initial: str, new: str, direction: imgui.Dir, ratio: float) -> hello_imgui.DockingSplit:
        s = hello_imgui.DockingSplit()
        s.initial_dock, s.new_dock, s.direction, s.ratio = initial, new, direction, ratio
        return s

    splits = [
        split("MainDockSpace", "LeftSpace", imgui.Dir.left, 0.21),
        split("MainDockSpace", "RightSpace", imgui.Dir.right, 0.33),
        split("MainDockSpace", "BottomSpace", imgui.Dir.down, 0.36),
        split("LeftSpace", "LeftBottomSpace", imgui.Dir.down, 0.36),
        split("RightSpace", "RightBottomSpace", imgui.Dir.down, 0.5),
    ]
    windows = [
        ("Controls", "LeftSpace", controls.gui_controls),
        ("Models", "LeftBottomSpace", models.gui_models),
        ("Record", "LeftBottomSpace", models.gui_record),
        ("View", "MainDockSpace", view.gui_view),
        ("Telemetry", "BottomSpace", telemetry.gui_telemetry),
        ("Training", "BottomSpace", training.gui_training),
        ("Log", "BottomSpace", None),
        ("Latent", "RightSpace", inside.gui_latent),
        ("Vision", "RightBottomSpace", inside.gui_vision),
        ("Futures", "RightBottomSpace", inside.gui_futures),
    ]
    dockable = []
    for label, space, fn in windows:
        w = hello_imgui.DockableWindow()
        w.label, w.dock_space_name = label, space
        w.gui_function = hello_imgui.log_gui if fn is None else panel(fn)
        dockable.append(w)
    params = hello_imgui.DockingParams()
    params.docking_splits = splits
    params.dockable_windows = dockable
    return params


def add_ons() -> immapp.AddOnsParams:
    """immapp add-ons: ImPlot for the plots."""
    return immapp.AddOnsParams(with_implot=True)


NO_DISPLAY = (
    "error: cannot open a window: no display (DISPLAY is not set or the X server refused); "
    "run it in a desktop session, or headless with `xvfb-run -a dream-explorer --frames N --screenshot out.png`"
)


def draw_status_bar(clock: FrameClock, jobs: Iterable[JobRunner], notices: Notices) -> None:
    """The status bar: FPS and the frame-time breakdown, memory, the running stage and the latest notice (coloured
    by level, cut to the room left, in full in its tooltip)."""
    b = clock.breakdown()
    if b:
        imgui.text(f"{b['fps']:5.1f} FPS  model {b['model']:4.1f} ms  env {b['env']:4.1f} ms  "
                   f"gui {b['gui']:4.1f} ms  |  RSS {rss_mb():.0f} MB")  # fmt: skip
    for job in jobs:
        if job.running:
            imgui.same_line()
            imgui.text(f"  |  {job.spec.title}: {100 * job.fraction:.0f}%")
    notice = notices.current()
    if notice is not None:
        level, text = notice
        imgui.same_line()
        imgui.text("  |  ")
        imgui.same_line()
        room = imgui.get_content_region_avail().x
        shown = text
        while len(shown) > 8 and imgui.calc_text_size(shown).x > room:
            shown = shown[: int(len(shown) * 0.9)].rstrip() + "..."
        color = RED if level >= logging.ERROR else ORANGE if level >= logging.WARNING else GREY
        imgui.text_colored(color, shown)
        imgui.set_item_tooltip(text + "\n(the Log panel keeps every line)")
