"""Dream Explorer: drive CarRacing-v3 in reality and in the world model's dream, look inside the models, and
train every stage from the GUI.

``dream-explorer`` (no subcommand) calls :func:`main`. The window is a hello_imgui docking layout (GLFW + OpenGL)
whose panels are small ``gui_*`` functions in :mod:`explorer.panels`; all state lives in one
:class:`~explorer.session.Session` (models, envs, dream, driver, recording) plus the few GUI-only fields of
:class:`App`. ``--frames N --screenshot out.png`` runs headless for CI and demos (under ``xvfb-run``), and
``--profile`` prints where the frame time goes (model, env, GUI) and how memory evolves.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import torch
import tyro
from imgui_bundle import hello_imgui, imgui, immapp

from core.stages import app_stages
from explorer.input import DriveKeys, Gamepad
from explorer.jobs import JobRunner, summarize
from explorer.panels import controls, inside, models, telemetry, training, view
from explorer.panels.config_form import draft_from_config, fill_loaded_models, merge_draft
from explorer.panels.file_picker import FilePicker
from explorer.panels.widgets import GREY, ORANGE, RED, Rect, note, paint_background
from explorer.profiler import FrameClock, rss_mb
from explorer.session import DREAM_SOURCES, MODES, VISION_KINDS, Session, SessionConfig
from explorer.textures import TextureBank

log = logging.getLogger("explorer")

TITLE = "Dream Explorer"
DEFAULT_SETTINGS_DIR = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "dream-explorer"
REAL_TIME_FPS = 50.0
"""CarRacing's own rate: with one env step per frame, capping the frame rate here makes the car run in real time."""
NOTICE_SECONDS = {logging.INFO: 8.0, logging.WARNING: 30.0, logging.ERROR: 60.0}
"""How long the status bar shows the latest log line, by its level."""
SETTINGS_DEPTH = 8
"""Nesting levels a settings file may have (explorer.json has 4); deeper files are refused whole."""
TORCH_THREADS = 1
"""Model inference here is batch 1 next to the GUI, software GL and maybe a training thread: on 2 cores a
second intra-op thread made every call many times slower (its OpenMP barrier waits on a busy core)."""


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
    """MDN temperature of the dream, 0 (deterministic: the MDN's mode) to 2.0 (unset: last, else 1.0)."""
    seed: int | None = None
    """Track seed of the real env (unset: last, else 0)."""
    horizon: int | None = None
    """Dream steps before the dream restarts; split mode re-syncs with reality (unset: last, else 300)."""
    futures: int | None = None
    """Dreams batched from one state, shown in the Futures grid, 1 to 16 (unset: last, else 4)."""
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
    stage_runner: Literal["process", "thread"] = "process"
    """Where Training-panel stages run: their own process (the GUI keeps its core and frame rate) or a thread of
    the app (starts faster; shares the interpreter lock and torch settings with the frame loop)."""
    start_stage: str | None = None
    """Start this Training-panel stage (collect, vision, encode, memory, ...) at the first frame, with the panel's
    settings (saved ones with --settings): a scripted start, e.g. to measure the frame rate while a stage runs."""


class App:
    """The running app: the session plus GUI-only state (textures, stage runners, edited configs, screen rects).

    Args:
        config: the parsed flags.
    """

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.settings_dir = None if self.fresh else (config.settings or DEFAULT_SETTINGS_DIR)
        self.notices = Notices()
        log.addHandler(self.notices)
        saved = self._read_settings()
        bad: list[str] = []

        def last(flag: Any, key: str, default: Any, valid: Callable[[Any], bool]) -> Any:
            """The flag when given, else the saved value when valid, else the default."""
            if flag is not None:
                return flag
            value = saved.get(key, default)
            if valid(value):
                return value
            bad.append(key)
            return default

        def number(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

        def count(v: Any) -> bool:
            return number(v) and 0 <= v < 2**31 and float(v).is_integer()

        self.clock = FrameClock()
        self.session = Session(
            SessionConfig(
                assets=config.assets,
                vision_kind=last(config.vision_kind, "vision_kind", "conv_vae", lambda v: v in VISION_KINDS),
                vision=config.vision,
                memory=config.memory,
                controller=config.controller,
                mode=last(config.mode, "mode", "split", lambda v: v in MODES),
                driver=config.driver,
                tau=last(config.tau, "tau", 1.0, number),
                seed=int(last(config.seed, "seed", 0, count)),
                horizon=int(last(config.horizon, "horizon", 300, count)),
                futures=int(last(config.futures, "futures", 4, count)),
                dream_source=last(None, "dream_source", "real", lambda v: v in DREAM_SOURCES),
                data_dir=Path(
                    last(config.data_dir, "data_dir", "data/episodes", lambda v: isinstance(v, str) and "\0" not in v)
                ),  # fmt: skip
            ),
            clock=self.clock,
        )
        self.textures = TextureBank(self.clock)
        self.gamepad = Gamepad()
        self.stages = app_stages()
        self.jobs = {spec.key: JobRunner(spec, config.stage_runner) for spec in self.stages}
        self.drafts: dict[str, dict[str, Any]] = {}
        saved_stages = saved.get("stages", {})
        for spec in self.stages:
            draft = draft_from_config(spec.config_cls())
            merge_draft(draft, spec.defaults)
            saved_draft = saved_stages.get(spec.key, {}) if isinstance(saved_stages, dict) else {}
            if isinstance(saved_draft, dict):  # keep saved values of the field's type only
                bad += [f"stages.{spec.key}.{k}" for k in merge_draft(draft, saved_draft)]
            else:
                bad.append(f"stages.{spec.key}")
            fill_loaded_models(draft, self.session.model_paths, self.session.data_dir)
            self.drafts[spec.key] = draft
        if not isinstance(saved_stages, dict):
            bad.append("stages")
        if bad:
            log.warning("settings: ignoring the invalid %s in %s; using the defaults", ", ".join(bad),
                        self._settings_file())  # fmt: skip
        self.job_status = {key: job.status for key, job in self.jobs.items()}
        """Each stage's status at the last frame (a change is logged)."""
        self.stage_errors: dict[str, str] = {}
        self.plot_metric: dict[str, str] = {}
        self.log_shown: set[str] = set()
        """Stages whose failure already brought their log to the front."""
        video_path = saved.get("video_path")
        self.video_path = video_path if isinstance(video_path, str) else "runs/drive.mp4"
        self.checkpoint_path = ""
        self.status_line = ""
        """The last load or save message of the Models and Record panels."""
        self.load_error = ""
        """Why the last checkpoint picked in the Models panel did not load ("" after a load that worked)."""
        self.picker = FilePicker()
        """The file picker of the path fields (one open at a time)."""
        real_time = saved.get("real_time")
        self.real_time = real_time if isinstance(real_time, bool) else True
        self.panel_errors: dict[str, str] = {}
        """The last error of each panel that raised (shown in the panel and logged)."""
        self.rects: dict[str, Rect] = {}
        """Where each picture was drawn in the last frame (tests compare screenshots there)."""
        self.futures_seen = False
        """The Futures grid was drawn last frame (then every dream is decoded, once)."""
        self.vision_seen = False
        """The Vision panel was drawn last frame (then its reconstruction is decoded with the dream)."""
        self.frame_count = 0
        self.screenshot: Any = None

    @property
    def fresh(self) -> bool:
        """No settings are read or written."""
        return self.config.fresh or (self.config.frames > 0 and self.config.settings is None)

    # -- settings ---------------------------------------------------------------------------------
    def _settings_file(self) -> Path | None:
        return None if self.settings_dir is None else self.settings_dir / "explorer.json"

    def _read_settings(self) -> dict[str, Any]:
        """The saved settings, or {} with a one-line note when the file is not a settings file (values of the
        wrong type or not finite are dropped one by one where they are read)."""
        path = self._settings_file()
        if path is None or not path.exists():
            return {}
        data, problem = read_settings_file(path)
        if problem:
            log.warning("settings: ignoring %s (%s); using the defaults", path, problem)
        return data

    def settings(self) -> dict[str, Any]:
        """What is saved between runs (the docking layout is saved by hello_imgui itself)."""
        s = self.session
        return {
            "mode": s.mode, "tau": s.tau, "horizon": s.horizon, "futures": s.futures, "seed": s.seed,
            "dream_source": s.dream_source, "data_dir": str(s.data_dir), "vision_kind": s.config.vision_kind,
            "video_path": self.video_path, "real_time": self.real_time, "stages": self.drafts,
        }  # fmt: skip

    def save_settings(self) -> None:
        """Write the settings file (nothing with --fresh)."""
        path = self._settings_file()
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.settings(), indent=1, default=str))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("settings not saved to %s: %s", path, exc.strerror or exc)
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    # -- the frame ---------------------------------------------------------------------------------
    def drive_keys(self) -> DriveKeys:
        """Arrows or WASD, unless a text field has the keyboard."""
        if imgui.get_io().want_text_input:
            return DriveKeys()
        down = imgui.is_key_down
        K = imgui.Key
        return DriveKeys(
            left=down(K.left_arrow) or down(K.a),
            right=down(K.right_arrow) or down(K.d),
            gas=down(K.up_arrow) or down(K.w),
            brake=down(K.down_arrow) or down(K.s),
        )

    def hotkeys(self) -> None:
        """P autopilot, Space pause, N single step, R reset, T new track, G new dream, 1/2/3 modes."""
        if imgui.get_io().want_text_input:
            return
        s = self.session
        K = imgui.Key

        def pressed(key: imgui.Key) -> bool:
            return imgui.is_key_pressed(key, False)

        if pressed(K.p):
            s.toggle_autopilot()
        if pressed(K.space):
            s.paused = not s.paused
        if pressed(K.n):
            s.request_step()
        if pressed(K.r):
            s.reset_real()
        if pressed(K.t):
            s.new_track()
        if pressed(K.g):
            s.start_dream()
        for key, mode in ((K._1, "real"), (K._2, "dream"), (K._3, "split")):
            if pressed(key):
                s.set_mode(mode)  # type: ignore[arg-type]

    def frame(self) -> None:
        """Called once per frame before the panels: stage reports, input, one simulation step, exit."""
        self.clock.end_frame()
        for key, job in self.jobs.items():
            job.poll()
            if job.status != self.job_status[key]:
                if self.job_status[key] == "running":
                    release_memory()
                self.job_status[key] = job.status
                log_stage_end(job)
        if self.frame_count == 0 and self.config.start_stage:
            training.start_stage(self, self.config.start_stage)
            if self.config.start_stage in self.stage_errors:
                log.error("%s not started: %s", self.config.start_stage, self.stage_errors[self.config.start_stage])
        self.session.native_kernels = not any(job.running and job.runner == "thread" for job in self.jobs.values())
        self.hotkeys()
        self.session.decode_all_futures, self.futures_seen = self.futures_seen, False
        self.session.wants_reconstruction, self.vision_seen = self.vision_seen, False
        self.session.tick(self.drive_keys(), self.gamepad.read())
        params = hello_imgui.get_runner_params()
        params.fps_idling.fps_max = self.fps_cap()
        self.frame_count += 1
        if self.config.frames and self.frame_count >= self.config.frames:
            params.app_shall_exit = True

    def fps_cap(self) -> float:
        """The frame-rate cap now: the flag, else real time unless profiling or counting frames."""
        if self.config.max_fps is not None:
            return self.config.max_fps
        if self.config.profile or self.config.frames:
            return 0.0
        return REAL_TIME_FPS if self.real_time else 0.0

    def status_bar(self) -> None:
        """FPS and the frame-time breakdown, memory, and the running stage."""
        b = self.clock.breakdown()
        if b:
            imgui.text(f"{b['fps']:5.1f} FPS  model {b['model']:4.1f} ms  env {b['env']:4.1f} ms  "
                       f"gui {b['gui']:4.1f} ms  |  RSS {rss_mb():.0f} MB")  # fmt: skip
        for job in self.jobs.values():
            if job.running:
                imgui.same_line()
                imgui.text(f"  |  {job.spec.title}: {100 * job.fraction:.0f}%")
        notice = self.notices.current()
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

    def before_exit(self) -> None:
        """Stop running stages, save settings, grab the screenshot, free the textures."""
        for job in self.jobs.values():
            job.cancel()
        for job in self.jobs.values():
            job.join(timeout=10.0)
        self.save_settings()
        if self.config.screenshot is not None:
            self.screenshot = hello_imgui.final_app_window_screenshot()
        self.textures.clear()

    # -- the window ---------------------------------------------------------------------------------
    def runner_params(self) -> hello_imgui.RunnerParams:
        """hello_imgui parameters: window, docking layout, callbacks, ini persistence, no MSAA."""
        p = hello_imgui.RunnerParams()
        p.app_window_params.window_title = TITLE
        p.app_window_params.window_geometry.size = (self.config.width, self.config.height)
        p.app_window_params.restore_previous_geometry = not self.fresh
        p.imgui_window_params.menu_app_title = TITLE
        p.imgui_window_params.show_menu_bar = True
        p.imgui_window_params.show_status_bar = True
        p.imgui_window_params.show_status_fps = False
        p.imgui_window_params.default_imgui_window_type = (
            hello_imgui.DefaultImGuiWindowType.provide_full_screen_dock_space
        )
        p.imgui_window_params.enable_viewports = False
        p.callbacks.show_gui = self.frame
        p.callbacks.show_status = self.status_bar
        p.callbacks.setup_imgui_style = setup_style
        p.callbacks.before_exit = self.before_exit
        p.docking_params = self.layout()
        p.fps_idling.enable_idling = False
        p.fps_idling.vsync_to_monitor = False
        p.fps_idling.fps_max = self.fps_cap()
        # Software GL (Mesa llvmpipe, Xvfb): hello_imgui's default 8x MSAA halves the frame rate.
        p.renderer_backend_options.open_gl_options.anti_aliasing_samples = 0
        if self.settings_dir is None:
            p.ini_disable = True
        else:
            try:
                self.settings_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("settings: cannot use %s (%s); nothing is saved", self.settings_dir, exc.strerror or exc)
                self.settings_dir = None
                p.ini_disable = True
                return p
            p.ini_folder_type = hello_imgui.IniFolderType.absolute_path
            p.ini_filename = str(self.settings_dir / "layout.ini")
        return p

    def layout(self) -> hello_imgui.DockingParams:
        """The default docking layout (the user's changes are kept in layout.ini).

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
            w.gui_function = hello_imgui.log_gui if fn is None else self._panel(fn)
            dockable.append(w)
        params = hello_imgui.DockingParams()
        params.docking_splits = splits
        params.dockable_windows = dockable
        return params

    def _panel(self, fn: Callable[[App], None]) -> Callable[[], None]:
        """The window function of a panel: its background when floating, and a bug in one panel reported in
        that panel (once in the log, with its traceback) instead of closing the app."""

        def draw() -> None:
            paint_background()
            try:
                with self.clock.stage(f"panel:{fn.__name__.removeprefix('gui_')}"):
                    fn(self)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                if self.panel_errors.get(fn.__name__) != message:
                    self.panel_errors[fn.__name__] = message
                    log.error("panel %s failed: %s\n%s", fn.__name__, message, traceback.format_exc())
                note(f"This panel failed: {message} (see the Log panel)", RED)

        return draw


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


def parse_flags(argv: list[str]) -> AppConfig:
    """Parse the app's flags (``app-help`` is an alias of ``--help``). Raises SystemExit on --help or errors."""
    args = ["--help" if a == "app-help" else a for a in argv]
    return tyro.cli(AppConfig, args=args, prog="dream-explorer",
                    description="Dream Explorer: drive CarRacing-v3 in reality and in the dream.")  # fmt: skip


def build_app(argv: list[str]) -> App:
    """Parse flags and build the app (models loaded, envs reset); the window opens with :func:`run`.

    The explorer's log goes to the Log panel, and its warnings also to stderr.
    """
    config = parse_flags(argv)
    torch.set_num_threads(TORCH_THREADS)
    panel, stderr = _HelloImguiLog(), logging.StreamHandler()
    stderr.setLevel(logging.WARNING)
    for handler in (panel, stderr):
        handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers = [panel, stderr]
    log.setLevel(logging.INFO)
    log.propagate = False
    return App(config)


def add_ons() -> immapp.AddOnsParams:
    """immapp add-ons: ImPlot for the plots."""
    return immapp.AddOnsParams(with_implot=True)


def run(app: App) -> None:
    """Open the window and run until it closes (or --frames are done)."""
    immapp.run(app.runner_params(), add_ons())


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


NO_DISPLAY = (
    "error: cannot open a window: no display (DISPLAY is not set or the X server refused); "
    "run it in a desktop session, or headless with `xvfb-run -a dream-explorer --frames N --screenshot out.png`"
)


def main(argv: list[str]) -> int:
    """Entry point of ``dream-explorer`` with no subcommand. Returns the exit code."""
    try:
        config = parse_flags(argv)
    except SystemExit as exc:  # --help, or a bad flag (tyro printed why)
        return int(exc.code or 0)
    stages = [spec.key for spec in app_stages()]
    if config.start_stage is not None and config.start_stage not in stages:
        print(f"error: --start-stage {config.start_stage!r} is not a stage (one of: {', '.join(stages)})",
              file=sys.stderr)  # fmt: skip
        return 2
    if config.screenshot is not None:
        problem = unwritable(config.screenshot)
        if problem:
            print(f"error: cannot write the screenshot {config.screenshot}: {problem}", file=sys.stderr)
            return 2
    app = build_app(argv)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        app.session.close()
        print(NO_DISPLAY, file=sys.stderr)
        return 2
    try:
        run(app)
    except RuntimeError as exc:
        app.session.close()
        if "glfw" in str(exc).lower():
            print(NO_DISPLAY, file=sys.stderr)
            return 2
        raise
    app.session.close()
    if app.config.screenshot is not None:
        if app.screenshot is None or app.screenshot.size == 0:
            print("error: no frame was rendered, no screenshot written", file=sys.stderr)
            return 1
        try:
            app.config.screenshot.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(app.config.screenshot), cv2.cvtColor(app.screenshot, cv2.COLOR_RGB2BGR))
        except (OSError, cv2.error) as exc:
            ok, why = False, getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        else:
            why = "the image writer refused it"
        if not ok:
            print(f"error: cannot write the screenshot {app.config.screenshot}: {why}", file=sys.stderr)
            return 2
        print(f"wrote {app.config.screenshot}")
    if app.config.profile:
        print(app.clock.report(skip=30))
    return 0
