"""The Models panel (which V, M and C are loaded, load another) and the Record panel (to the dataset or a video)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui

from explorer.panels.widgets import GREEN, GREY, ORANGE, RED, caption, note
from explorer.session import MISSING, log

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost

PART_TITLES = {"vision": "V  vision", "memory": "M  memory", "controller": "C  controller"}
KIND_LABELS = {"conv_vae": "ConvVAE", "dds_vae": "DDS+VAE"}


def gui_models(app: PanelHost) -> None:
    """The shipped world model to use, each part's state, and a field to load any checkpoint."""
    s = app.session
    caption("shipped world model")
    for kind, label in KIND_LABELS.items():
        if imgui.radio_button(f"{label}###kind_{kind}", s.config.vision_kind == kind):
            s.use_shipped(kind)
        imgui.same_line()
    imgui.new_line()
    for part, title in PART_TITLES.items():
        loaded = getattr(s, part) is not None
        missing = s.model_notes[part] == MISSING[part]
        color = GREEN if loaded else ORANGE if missing else RED
        icon = fa.ICON_FA_CHECK_CIRCLE if loaded else fa.ICON_FA_EXCLAMATION_TRIANGLE
        imgui.text_colored(color, f"{icon} {title}")
        imgui.push_style_color(imgui.Col_.text, GREY if loaded else color)
        imgui.text_wrapped(s.model_notes[part])
        imgui.pop_style_color()
        if s.model_paths[part] is not None:
            imgui.set_item_tooltip(str(s.model_paths[part]))
    imgui.separator()
    caption("load a checkpoint of V, M or C")
    imgui.set_next_item_width(-110)
    _, app.checkpoint_path = imgui.input_text("##checkpoint", app.checkpoint_path)
    imgui.set_item_tooltip("A .safetensors checkpoint of V, M or C (the kind it holds decides the part)")
    imgui.same_line()
    picked = app.picker.button("checkpoint", app.checkpoint_path, "Load a checkpoint", (".safetensors",))
    imgui.same_line()
    if picked is not None:
        app.checkpoint_path = picked
    if (imgui.button("Load###load_checkpoint") or picked is not None) and app.checkpoint_path:
        load_checkpoint(app, app.checkpoint_path)
    if app.load_error:
        note(app.load_error, RED)


def load_checkpoint(app: PanelHost, path: str) -> None:
    """Load a checkpoint into the running app; a file that is not one leaves a one-line error (``load_error``,
    the Log panel, the status bar) and the loaded models as they were."""
    try:
        app.status_line = app.session.load_checkpoint(Path(path))
    except Exception as exc:  # any unreadable file: say why, keep running
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        app.load_error = f"cannot load {path}: {first}"
        log.error(app.load_error)
    else:
        app.load_error = ""


def gui_record(app: PanelHost) -> None:
    """Record what the mode runs; save it to the dataset as an episode, or to an MP4 / GIF."""
    s = app.session
    rec = s.recorder
    if rec.active:
        if imgui.button(f"{fa.ICON_FA_STOP} Stop###record"):
            rec.stop()
        imgui.same_line()
        imgui.text_colored(RED, f"{fa.ICON_FA_CIRCLE} recording {s.mode}: {rec.steps} steps")
    else:
        if imgui.button(f"{fa.ICON_FA_CIRCLE} Record###record"):
            s.start_recording()
        imgui.same_line()
        imgui.text_disabled(f"{rec.steps} steps held" if rec.steps else f"records the {s.mode} view")
    caption("dataset directory")
    imgui.set_next_item_width(-40)
    changed, data_dir = imgui.input_text("##data_dir", str(s.data_dir))
    if changed:
        s.data_dir = Path(data_dir)
    imgui.set_item_tooltip("Recorded episodes go here; the dream's dataset frames come from here")
    imgui.same_line()
    picked = app.picker.button("record_data_dir", str(s.data_dir), "Dataset directory", directories=True)
    if picked is not None:
        s.data_dir = Path(picked)
    imgui.begin_disabled(rec.active or not rec.steps)
    if imgui.button(f"{fa.ICON_FA_DATABASE} Save to dataset###save_episode"):
        _save(app, lambda: rec.save_episode(s.data_dir))
    imgui.set_item_tooltip("A new episode file (real frames; a dream alone is reshaped to 96x96 with an empty HUD)")
    imgui.end_disabled()
    caption("video file (.mp4 or .gif)")
    imgui.set_next_item_width(-150)
    _, app.video_path = imgui.input_text("##video_path", app.video_path)
    imgui.same_line()
    folder = app.picker.button("record_video_dir", str(Path(app.video_path).parent), "Folder of the video",
                               directories=True)  # fmt: skip
    if folder is not None:  # the file keeps its name, in the chosen folder
        app.video_path = str(Path(folder) / (Path(app.video_path).name or "drive.mp4"))
    imgui.same_line()
    imgui.begin_disabled(rec.active or not rec.steps)
    if imgui.button(f"{fa.ICON_FA_FILM} Save video###save_video"):
        _save(app, lambda: rec.save_video(app.video_path))
    imgui.set_item_tooltip("Real | dream side by side when both were recorded")
    imgui.end_disabled()
    if app.status_line:
        note(app.status_line, GREY)


def _save(app: PanelHost, write: Callable[[], Path]) -> None:
    """Run a save, and say where it went or why it failed."""
    try:
        path = write()
    except Exception as exc:  # disk full, bad path: tell, keep running
        app.status_line = f"not saved: {exc}"
        log.error(app.status_line)
        return
    app.status_line = f"saved {path}"
    log.info(app.status_line)
