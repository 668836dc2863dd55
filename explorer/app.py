"""Dream Explorer: drive CarRacing-v3 in reality and in the world model's dream, look inside the models, and
train every stage from the GUI.

``dream-explorer`` (no subcommand) calls :func:`main`. The window is a hello_imgui docking layout (GLFW + OpenGL)
whose panels are small ``gui_*`` functions in :mod:`explorer.panels`; all state lives in one
:class:`~explorer.session.Session` (models, envs, dream, driver, recording) plus the few GUI-only fields of
:class:`App`. ``--frames N --screenshot out.png`` runs headless for CI and demos (under ``xvfb-run``), and
``--profile`` prints where the frame time goes (model, env, GUI) and how memory evolves.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import torch
from imgui_bundle import hello_imgui, imgui, immapp

from core.stages import app_stages
from explorer.app_support import (  # noqa: F401  (Notices and log_stage_end re-exported for the tests)
    NO_DISPLAY,
    AppConfig,
    Notices,
    _HelloImguiLog,
    add_ons,
    docking_layout,
    draw_status_bar,
    flag_problem,
    log_stage_end,
    parse_flags,
    read_settings_file,
    release_memory,
    setup_style,
)
from explorer.input import Gamepad
from explorer.jobs import JobRunner
from explorer.panels import training
from explorer.panels.config_form import draft_from_config, fill_loaded_models, merge_draft
from explorer.panels.file_picker import FilePicker
from explorer.panels.widgets import RED, Rect, note, paint_background
from explorer.pipeline import PhysicalKeys, StepThread, imgui_drive_keys
from explorer.profiler import FrameClock
from explorer.session import DREAM_SOURCES, MODES, VISION_KINDS, Session, SessionConfig
from explorer.session_state import DEFAULT_TAU, Mode
from explorer.textures import TextureBank

log = logging.getLogger("explorer")

TITLE = "Dream Explorer"
DEFAULT_SETTINGS_DIR = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "dream-explorer"
REAL_TIME_FPS = 50.0
"""CarRacing's own rate: with one env step per frame, capping the frame rate here makes the car run in real time."""
TORCH_THREADS = 1
"""Model inference here is batch 1 next to the GUI, software GL and maybe a training thread: on 2 cores a
second intra-op thread made every call many times slower (its OpenMP barrier waits on a busy core)."""


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
                tau=last(config.tau, "tau", DEFAULT_TAU, number),
                seed=int(last(config.seed, "seed", 0, count)),
                horizon=int(last(config.horizon, "horizon", 300, count)),
                futures=int(last(config.futures, "futures", 1, count)),
                dream_source=last(None, "dream_source", "real", lambda v: v in DREAM_SOURCES),
                data_dir=Path(
                    last(config.data_dir, "data_dir", "data/episodes", lambda v: isinstance(v, str) and "\0" not in v)
                ),  # fmt: skip
                parallel_split=config.parallel_split,
                ground_dream=config.ground_dream,
                vision_runtime=config.vision_runtime,
                vision_bf16=config.vision_bf16,
                vision_threads=config.vision_threads,
            ),
            clock=self.clock,
        )
        self.textures = TextureBank(self.clock)
        self.gamepad = Gamepad()
        self.step_thread = StepThread(self.clock) if config.pipeline else None
        """Runs the next step while this frame is swapped to the screen (explorer.pipeline); None: at frame start."""
        self.physical_keys: PhysicalKeys | None = None
        """The keyboard read at the step's start (made with the window; unavailable under the test engine)."""
        self.stages = app_stages()
        self.jobs = {spec.key: JobRunner(spec, config.stage_runner, config.stage_priority) for spec in self.stages}
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
        modes: tuple[tuple[imgui.Key, Mode], ...] = ((K._1, "real"), (K._2, "dream"), (K._3, "split"))
        for key, mode in modes:
            if pressed(key):
                s.set_mode(mode)

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
        self.session.second_core_free = not any(job.running for job in self.jobs.values())
        self.hotkeys()
        if self.step_thread is None or self.frame_count == 0:
            self._tick_inputs()
            self.session.tick(imgui_drive_keys(), self.gamepad.read())
        params = hello_imgui.get_runner_params()
        params.fps_idling.fps_max = self.fps_cap()
        self.frame_count += 1
        if self.config.frames and self.frame_count >= self.config.frames:
            params.app_shall_exit = True

    def _tick_inputs(self) -> None:
        """What the panels drawn since the last step ask of the next one (every dream's decode, the reconstruction)."""
        self.session.decode_all_futures, self.futures_seen = self.futures_seen, False
        self.session.wants_reconstruction, self.vision_seen = self.vision_seen, False

    def start_next_step(self) -> None:
        """Before the swap: start the step the next frame shows on the step thread, with the keys held now."""
        if self.step_thread is None or hello_imgui.get_runner_params().app_shall_exit:
            return
        if self.physical_keys is None:
            self.physical_keys = PhysicalKeys()
            if not self.physical_keys.available:
                log.info("pipelined steps read imgui's keys of the frame (no GLFW binding or window)")
        testing = hello_imgui.get_runner_params().use_imgui_test_engine
        if testing or not self.physical_keys.available or imgui.get_io().want_text_input:
            keys = imgui_drive_keys()
        else:
            keys = self.physical_keys.read()
        pad = self.gamepad.read()
        self._tick_inputs()
        self.step_thread.submit(lambda: self.session.tick(keys, pad))

    def fps_cap(self) -> float:
        """The frame-rate cap now: the flag, else real time unless profiling or counting frames."""
        if self.config.max_fps is not None:
            return self.config.max_fps
        if self.config.profile or self.config.frames:
            return 0.0
        return REAL_TIME_FPS if self.real_time else 0.0

    def status_bar(self) -> None:
        """FPS and the frame-time breakdown, memory, the running stage and the latest notice."""
        draw_status_bar(self.clock, self.jobs.values(), self.notices)

    def before_exit(self) -> None:
        """Finish the pending step, stop running stages, save settings, grab the screenshot, free the textures."""
        if self.step_thread is not None:
            self.step_thread.close()
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
        if self.step_thread is not None:
            p.callbacks.before_swap = self.start_next_step
            p.callbacks.pre_new_frame = self.step_thread.join
        p.docking_params = docking_layout(self._panel)
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


def run(app: App) -> None:
    """Open the window and run until it closes (or --frames are done)."""
    immapp.run(app.runner_params(), add_ons())


def main(argv: list[str]) -> int:
    """Entry point of ``dream-explorer`` with no subcommand. Returns the exit code."""
    try:
        config = parse_flags(argv)
    except SystemExit as exc:  # --help, or a bad flag (tyro printed why)
        return int(exc.code or 0)
    problem = flag_problem(config, [spec.key for spec in app_stages()])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
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
