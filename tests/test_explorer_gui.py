"""The explorer driven through imgui's test engine (immapp.testing) under Xvfb: keys, sliders, buttons, training
from the GUI, and screenshots checked on regions (not golden images)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from imgui_bundle import hello_imgui, imgui
from imgui_bundle.immapp import testing

from core.api import EVAL_GATES, read_episode
from explorer.app import App, add_ons, build_app

pytestmark = [
    pytest.mark.gui,
    pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run"),
]

Ctx = imgui.test_engine.TestContext


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The app runs inference on one thread (see explorer.app.TORCH_THREADS); restore the suite's setting."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def run_app(argv: list[str], test: Callable[[Ctx, App], None], fresh: bool = True) -> App:
    """Build the app from ``argv`` and run ``test(ctx, app)`` inside it; returns the app after the window closed."""
    app = build_app([*(["--fresh"] if fresh else []), "--max-fps", "0", *argv])
    params = app.runner_params()

    def patient_watchdog() -> None:
        """Stages start in their own (spawned) process: on a loaded machine a test outlasts the 60 s default."""
        io = imgui.test_engine.get_io(hello_imgui.get_imgui_test_engine())
        io.config_watchdog_warning, io.config_watchdog_kill_test, io.config_watchdog_kill_app = 120.0, 300.0, 600.0

    params.callbacks.register_tests = patient_watchdog
    testing.run(test_function=lambda ctx: test(ctx, app), runner_params=params, add_ons_params=add_ons())
    app.session.close()
    assert not app.panel_errors, app.panel_errors
    return app


def capture(ctx: Ctx, path: Path) -> np.ndarray:
    """A screenshot of the whole window, RGB uint8."""
    testing.capture(ctx, str(path))
    image = cv2.imread(str(path))
    assert image is not None, f"no screenshot at {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def region(image: np.ndarray, rect: tuple[float, float, float, float], inset: int = 2) -> np.ndarray:
    """The pixels of ``rect`` (x0, y0, x1, y1), a few pixels inside its border."""
    x0, y0, x1, y1 = (int(round(v)) for v in rect)
    return image[y0 + inset : y1 - inset, x0 + inset : x1 - inset]


def wait_until(ctx: Ctx, condition: Callable[[], bool], seconds: float = 240.0) -> bool:
    """Yield frames until ``condition()`` holds (or ``seconds`` of wall time pass). Wall time, not a frame count:
    uncapped frames pass in a few milliseconds, and on a loaded machine a stage's spawned process alone can take
    longer than thousands of them to start."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        ctx.yield_()
    return condition()


def test_drive_real_and_dream_with_keys(data: Path, tmp_path: Path) -> None:
    """Up arrow drives the car in the real env and changes the dream frame; the frame region on screen is the
    last rendered real frame; P hands the wheel to the autopilot and a key takes it back."""
    seen: dict[str, object] = {}

    def test(ctx: Ctx, app: App) -> None:
        s = app.session
        ctx.yield_(3)
        hull = s.env.unwrapped.car.hull  # type: ignore[attr-defined]
        start_pos = np.array(hull.position)
        dream_before = s.dream_frame().copy()  # type: ignore[union-attr]
        ctx.key_down(imgui.Key.up_arrow)
        ctx.yield_(40)
        ctx.key_up(imgui.Key.up_arrow)
        seen["moved"] = float(np.linalg.norm(np.array(hull.position) - start_pos))
        seen["speed"] = s.speed
        seen["dream_changed"] = float(np.abs(s.dream_frame().astype(int) - dream_before).mean())  # type: ignore[union-attr]
        ctx.key_press(imgui.Key.space)  # pause: the frame on screen stays the last one stepped
        ctx.yield_(3)
        seen["paused"] = s.paused
        shot = capture(ctx, tmp_path / "drive.png")
        real = region(shot, app.rects["real"])
        seen["frame_error"] = float(np.abs(cv2.resize(real, (96, 96), interpolation=cv2.INTER_AREA).astype(int)
                                           - s.real_frame.astype(int)).mean())  # fmt: skip
        seen["frame_error_other"] = float(np.abs(cv2.resize(real, (96, 96), interpolation=cv2.INTER_AREA)
                                                 .astype(int) - np.roll(s.real_frame, 20, axis=0)).mean())  # fmt: skip
        ctx.key_press(imgui.Key.p)
        ctx.yield_(2)
        seen["autopilot"] = s.driver
        ctx.key_down(imgui.Key.left_arrow)
        ctx.yield_(2)
        ctx.key_up(imgui.Key.left_arrow)
        seen["after_key"] = s.driver

    run_app(["--assets", str(data / "assets"), "--mode", "split", "--data-dir", str(data / "episodes")], test)
    assert seen["moved"] > 1.0 and seen["speed"] > 1.0
    assert seen["dream_changed"] > 0.0
    assert seen["paused"] is True
    assert seen["frame_error"] < 6.0 < seen["frame_error_other"], seen
    assert seen["autopilot"] == "autopilot" and seen["after_key"] == "human"


def test_tau_slider_changes_the_next_step_spread(data: Path, tmp_path: Path) -> None:
    """The tau slider acts on the next dream step: futures dreamt from one state scatter more at a high tau.
    Then the dream is recorded and saved to the dataset and to a GIF from the Record panel."""
    seen: dict[str, float] = {}

    def spread_after_one_step(ctx: Ctx, app: App, tau: float) -> tuple[float, float]:
        ctx.item_input_value("//**/###tau", tau)
        ctx.item_click("//**/###source_random")  # N futures from one random z
        ctx.key_press(imgui.Key.n)  # one step
        ctx.yield_(2)
        return app.session.next_step_spread(), app.session.dream_spread()

    def test(ctx: Ctx, app: App) -> None:
        ctx.key_press(imgui.Key.space)
        ctx.yield_(2)
        seen["low_next"], seen["low_futures"] = spread_after_one_step(ctx, app, 0.05)
        seen["tau_low"] = app.session.tau
        seen["high_next"], seen["high_futures"] = spread_after_one_step(ctx, app, 2.0)
        seen["tau_high"] = app.session.tau
        seen["step"] = app.session.dream_tally.step
        # record the dream, save it as an episode and as a GIF
        ctx.key_press(imgui.Key.space)
        ctx.window_focus("//Record")
        ctx.item_click("//**/###record")
        ctx.yield_(12)
        ctx.item_click("//**/###record")
        app.session.data_dir = tmp_path / "recorded"
        app.video_path = str(tmp_path / "dream.gif")
        ctx.item_click("//**/###save_episode")
        ctx.item_click("//**/###save_video")

    run_app(["--assets", str(data / "assets"), "--mode", "dream", "--futures", "4"], test)
    episodes = list((tmp_path / "recorded").glob("ep_drive_*_dream.npz"))
    assert len(episodes) == 1 and read_episode(episodes[0]).frames.shape[1:] == (96, 96, 3)
    assert (tmp_path / "dream.gif").stat().st_size > 1000
    assert seen["tau_low"] == pytest.approx(0.05) and seen["tau_high"] == pytest.approx(2.0)
    assert seen["step"] == 1
    assert seen["high_next"] > 2 * seen["low_next"] > 0
    assert seen["high_futures"] > 2 * seen["low_futures"] > 0


def test_tau_slider_reaches_zero_the_deterministic_dream(data: Path) -> None:
    """Dragging the tau slider to its left end sets tau 0 (the MDN's mode, as ``--tau 0`` on the command line):
    the futures dreamt from one random z then do not part, step after step."""
    seen: dict[str, float] = {}

    def test(ctx: Ctx, app: App) -> None:
        ctx.key_press(imgui.Key.space)  # pause
        ctx.yield_(2)
        rect = ctx.item_info("//**/###tau").rect_full
        ctx.mouse_move("//**/###tau")
        ctx.mouse_down(0)
        ctx.mouse_move_to_pos(imgui.ImVec2(rect.min.x - 40, rect.get_center().y))
        ctx.mouse_up(0)
        ctx.yield_(2)
        seen["tau"] = app.session.tau
        ctx.item_click("//**/###source_random")
        for _ in range(5):
            ctx.key_press(imgui.Key.n)
            ctx.yield_(1)
        seen["step"] = app.session.dream_tally.step
        seen["spread"] = app.session.dream_spread()
        seen["next_spread"] = app.session.next_step_spread()

    run_app(["--assets", str(data / "assets"), "--mode", "dream", "--futures", "4", "--tau", "1.0"], test)
    assert seen["tau"] == 0.0
    assert seen["step"] == 5 and seen["spread"] == 0.0 and seen["next_spread"] == 0.0


def test_file_picker_loads_models_and_sets_stage_inputs(data: Path, tmp_path: Path) -> None:
    """The Models panel's browse button lists a directory; picking a file that is not a checkpoint shows a
    one-line error and keeps the loaded models; picking a memory checkpoint in a sub-directory loads it. In the
    Training panel a stage's path field gets the file picked (the Memory stage's latents, a .npz)."""
    seen: dict[str, object] = {}
    (tmp_path / "bad.safetensors").write_text("not a checkpoint\nsecond line")
    (tmp_path / "models").mkdir()
    good = tmp_path / "models" / "m.safetensors"
    good.write_bytes((data / "assets" / "convvae_memory.safetensors").read_bytes())
    (tmp_path / "notes.txt").write_text("not listed")
    latents = tmp_path / "models" / "lat.npz"
    latents.write_bytes(b"")

    def pick(ctx: Ctx, button: str, *entries: str) -> None:
        ctx.item_click(f"//**/###pick_{button}")
        ctx.yield_(2)
        for entry in entries:
            ctx.item_click(f"//**/###entry_{entry}")
            ctx.yield_(2)
        ctx.item_click("//**/###picker_ok")
        ctx.yield_(2)

    def test(ctx: Ctx, app: App) -> None:
        s = app.session
        vision_before = s.vision
        ctx.window_focus("//Models")
        app.checkpoint_path = str(tmp_path / "missing.safetensors")  # the picker opens in its directory
        ctx.item_click("//**/###pick_checkpoint")
        ctx.yield_(2)
        seen["listed"] = [e.name for e in app.picker._entries]
        ctx.item_click("//**/###picker_cancel")
        ctx.yield_(2)
        pick(ctx, "checkpoint", "bad.safetensors")
        seen["error"] = app.load_error
        seen["vision_kept"] = s.vision is vision_before and s.memory is not None
        pick(ctx, "checkpoint", "models", "m.safetensors")
        seen["memory_path"] = s.model_paths["memory"]
        seen["error_after"] = app.load_error
        ctx.window_focus("//Training")
        ctx.item_click("//**/###tab_memory")
        ctx.yield_(2)
        app.drafts["memory"]["latents"] = str(tmp_path / "models" / "old.npz")
        ctx.yield_(1)
        pick(ctx, "MemoryTrainConfig.latents", "lat.npz")
        seen["latents"] = app.drafts["memory"]["latents"]
        ctx.window_focus("//Record")  # the Record panel: the dataset folder, and the video's folder (name kept)
        s.data_dir, app.video_path = tmp_path, str(tmp_path / "clip.gif")
        ctx.yield_(1)
        pick(ctx, "record_data_dir", "models")
        pick(ctx, "record_video_dir", "models")
        seen["record"] = (s.data_dir, app.video_path)

    run_app(["--assets", str(data / "assets"), "--mode", "split"], test)
    assert seen["listed"] == ["models", "bad.safetensors"]
    error = str(seen["error"])
    assert error.startswith(f"cannot load {tmp_path / 'bad.safetensors'}") and "\n" not in error, error
    assert seen["vision_kept"] is True
    assert Path(str(seen["memory_path"])).resolve() == good.resolve() and seen["error_after"] == ""
    assert Path(str(seen["latents"])).resolve() == latents.resolve()
    data_dir, video = seen["record"]  # type: ignore[misc]
    assert Path(data_dir).resolve() == (tmp_path / "models").resolve()
    assert Path(video).resolve() == (tmp_path / "models" / "clip.gif").resolve()


def test_training_stage_from_the_gui(data: Path, tmp_path: Path) -> None:
    """A tiny vision stage started from the Training panel reaches 100% and its checkpoint loads in one click;
    a long one is cancelled; a stage that raises shows its error and the app keeps running."""
    seen: dict[str, object] = {}
    out = tmp_path / "vision.safetensors"

    def test(ctx: Ctx, app: App) -> None:
        vision = app.jobs["vision"]
        ctx.window_focus("//Training")
        ctx.item_click("//**/###tab_vision")
        app.drafts["vision"].update(data_dir=str(data / "episodes"), out=str(out), batch_size=16, bf16=False)
        ctx.item_input_value("//**/##epochs", 1)
        ctx.item_click("//**/###start_vision")
        seen["finished"] = wait_until(ctx, lambda: not vision.running)
        seen["status"], seen["fraction"] = vision.status, vision.fraction
        ctx.item_click("//**/###load_vision")
        seen["vision_path"] = app.session.model_paths["vision"]
        # cancel a long run
        ctx.item_input_value("//**/##epochs", 10_000)
        ctx.item_click("//**/###start_vision")
        ctx.yield_(10)
        seen["running"] = vision.running
        ctx.item_click("//**/###cancel_vision")
        wait_until(ctx, lambda: not vision.running)
        seen["cancelled"] = vision.status
        # a stage that raises
        encode = app.jobs["encode"]
        ctx.item_click("//**/###tab_encode")
        app.drafts["encode"].update(data_dir=str(data / "episodes"), vision=str(tmp_path / "missing.safetensors"),
                                    out=str(tmp_path / "latents.npz"))  # fmt: skip
        ctx.item_click("//**/###start_encode")
        wait_until(ctx, lambda: not encode.running)
        seen["failed"], seen["error"] = encode.status, encode.error
        steps = app.session.dream_version
        ctx.yield_(10)
        seen["steps_after_failure"] = app.session.dream_version - steps

    run_app(["--assets", str(data / "assets"), "--mode", "dream", "--futures", "1"], test)
    assert seen["finished"] and seen["status"] == "done" and seen["fraction"] == 1.0
    assert out.is_file() and seen["vision_path"] == out
    assert seen["running"] and seen["cancelled"] == "cancelled"
    assert seen["failed"] == "failed" and "missing.safetensors" in str(seen["error"])
    assert seen["steps_after_failure"] >= 9


def test_dds_mask_view_keeps_about_three_percent(data: Path, tmp_path: Path) -> None:
    """With a DDS+VAE, the mask view shows the binary mask: about 3% of its values are white."""
    seen: dict[str, float] = {}

    def test(ctx: Ctx, app: App) -> None:
        ctx.yield_(3)
        ctx.key_press(imgui.Key.space)
        ctx.yield_(2)
        shot = capture(ctx, tmp_path / "mask.png")
        mask = region(shot, app.rects["mask"], inset=0)
        seen["white"] = float((mask > 127).mean())
        seen["kept"] = app.session.mask_views().kept  # type: ignore[union-attr]
        seen["own"] = app.session.dds_eval_gates  # type: ignore[assignment]
        other = "frozen-noise" if seen["own"] == "deterministic" else "deterministic"
        ctx.window_focus("//Vision")
        ctx.item_click("//Vision/###dds_eval_gates")  # opens the popup on the current choice
        # the popup lists the choices one line each under the combo (the engine's ComboClick cannot find it)
        x0, _, _, y1 = app.rects["dds_eval_gates"]
        row = EVAL_GATES.index(other) + 0.5
        y = y1 + imgui.get_style().window_padding.y + row * imgui.get_text_line_height_with_spacing()
        ctx.mouse_move_to_pos(imgui.ImVec2(x0 + 30, y))
        ctx.mouse_click(0)
        ctx.yield_(2)
        seen["switched"] = app.session.dds_eval_gates  # type: ignore[assignment]
        seen["kept_after"] = app.session.mask_views().kept  # type: ignore[union-attr]

    run_app(["--assets", str(data / "assets"), "--vision-kind", "dds_vae", "--mode", "real"], test)
    assert seen["kept"] == pytest.approx(0.03, abs=0.001) and seen["kept_after"] == seen["kept"]
    assert seen["switched"] != seen["own"], seen  # the combo switched the DDS's evaluation gates
    assert 0.02 < seen["white"] < 0.045, seen


def test_settings_and_layout_persist(data: Path, tmp_path: Path) -> None:
    """tau set in the GUI and the docking layout are saved on exit and restored at the next start."""
    settings = tmp_path / "settings"

    def test(ctx: Ctx, app: App) -> None:
        ctx.item_input_value("//**/###tau", 0.5)
        ctx.yield_(2)

    run_app(["--assets", str(data / "assets"), "--settings", str(settings), "--mode", "dream"], test, fresh=False)
    assert (settings / "layout.ini").is_file() and (settings / "explorer.json").is_file()
    app = build_app(["--assets", str(data / "assets"), "--settings", str(settings)])
    try:
        assert app.session.tau == pytest.approx(0.5) and app.session.mode == "dream"
    finally:
        app.session.close()


def test_headless_smoke_run_writes_a_screenshot(tmp_path: Path) -> None:
    """`--frames N --screenshot out.png` exits 0 and writes the window; with no assets the app still opens."""
    from explorer.app import main

    out = tmp_path / "smoke.png"
    assert main(["--assets", str(tmp_path / "no_assets"), "--frames", "8", "--screenshot", str(out),
                 "--mode", "split"]) == 0  # fmt: skip
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (800, 1280)


def test_iterate_stage_edits_its_nested_configs(data: Path, tmp_path: Path) -> None:
    """The Iterate tab shows the controller and memory settings it nests as tree nodes, edited in place."""
    seen: dict[str, object] = {}

    def test(ctx: Ctx, app: App) -> None:
        ctx.window_focus("//Training")
        ctx.item_click("//**/###tab_iterate")
        ctx.item_click("//**/###train_controller")  # opens the nested controller settings
        ctx.item_input_value("//**/##generations", 3)
        ctx.yield_(2)
        capture(ctx, tmp_path / "iterate.png")
        seen["draft"] = app.drafts["iterate"]

    run_app(["--assets", str(data / "assets"), "--mode", "real"], test)
    draft = seen["draft"]
    assert isinstance(draft, dict) and draft["train_controller"]["generations"] == 3
    from core.api import IterateConfig
    from explorer.panels.config_form import config_from_draft

    assert config_from_draft(IterateConfig, draft).train_controller.generations == 3
