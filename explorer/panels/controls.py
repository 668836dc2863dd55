"""The Controls panel: who drives, the track, real time, and the dream's settings (tau, horizon, futures, start)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui

from explorer.panels.widgets import GREY, PURPLE, caption, note, show_image
from explorer.session import DRIVERS, TAU_RANGE
from explorer.session_state import DreamSource

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost

KEYS_HELP = (
    ("arrows / WASD", "steer, gas, brake"),
    ("P", "autopilot on / off"),
    ("Space, N", "pause, one step"),
    ("R, T", "restart, new track"),
    ("G", "new dream"),
    ("1, 2, 3", "real, dream, split"),
)
SOURCE_LABELS: dict[DreamSource, str] = {"real": "Real frame", "random": "Random z", "dataset": "Dataset frame"}
SOURCE_HELP = {
    "real": "Encode the current real frame and continue from reality's LSTM state",
    "random": "z ~ N(0, I) with a zero LSTM state",
    "dataset": "A random frame of a random episode in the dataset directory",
}


def gui_driving(app: PanelHost) -> None:
    """Driver choice, track seed, real-time pacing, gamepad state, key help."""
    s = app.session
    imgui.separator_text(f"{fa.ICON_FA_CAR}  Drive")
    for driver in DRIVERS:
        disabled = driver == "autopilot" and not s.can_autopilot
        imgui.begin_disabled(disabled)
        if imgui.radio_button(f"{driver.capitalize()}###driver_{driver}", s.driver == driver):
            s.set_driver(driver)
        imgui.end_disabled()
        if disabled:
            imgui.set_item_tooltip(s.model_notes["controller"])
        imgui.same_line()
    imgui.new_line()
    imgui.set_next_item_width(imgui.get_content_region_avail().x * 0.5)
    changed, seed = imgui.input_int("track seed", s.seed, 1, 10, imgui.InputTextFlags_.enter_returns_true)
    if changed:
        s.reset_real(max(0, seed))
    _, app.real_time = imgui.checkbox("real time (50 Hz)", app.real_time)
    imgui.set_item_tooltip("One env step per frame at CarRacing's own 50 Hz; off: as fast as the machine goes")
    pad = app.gamepad.name
    caption(f"{fa.ICON_FA_GAMEPAD}  {pad}" if pad else f"{fa.ICON_FA_KEYBOARD}  keyboard (no gamepad found)")
    if imgui.tree_node("Keys"):
        if imgui.begin_table("keys", 2, imgui.TableFlags_.sizing_fixed_fit):  # a column as wide as its longest key
            for key, what in KEYS_HELP:
                imgui.table_next_row()
                imgui.table_next_column()
                imgui.text(key)
                imgui.table_next_column()
                imgui.text_colored(GREY, what)
            imgui.end_table()
        imgui.tree_pop()


def gui_dream_settings(app: PanelHost) -> None:
    """tau, horizon, number of futures, where the dream starts, and the spread tau gives."""
    s = app.session
    imgui.separator_text(f"{fa.ICON_FA_MOON}  Dream")
    if not s.can_dream:
        note(s.model_notes["vision"] if s.vision is None else s.model_notes["memory"])
        return
    width = imgui.get_content_region_avail().x * 0.62
    imgui.set_next_item_width(width)
    changed, tau = imgui.slider_float("tau###tau", s.tau, *TAU_RANGE, "%.2f", imgui.SliderFlags_.logarithmic)
    if changed:
        s.tau = tau
    imgui.set_item_tooltip("MDN temperature: logits / tau, noise * sqrt(tau); acts on the next dream step.\n"
                           "The left end is 0: the deterministic dream (each step the most likely component's "
                           "mean, no noise).\nCtrl+click to type a value.")  # fmt: skip
    if s.tau == 0:
        caption("tau 0: deterministic, the MDN's mode", PURPLE)
    imgui.set_next_item_width(width)
    changed, horizon = imgui.slider_int("horizon###horizon", s.horizon, 10, 1000)
    if changed:
        s.horizon = horizon
    imgui.set_item_tooltip("Dream steps before the dream restarts (in split mode: re-synchronises with reality)")
    imgui.set_next_item_width(width)
    changed, futures = imgui.slider_int("futures###futures", s.futures, 1, 16)
    if changed:
        s.futures = futures
    imgui.set_item_tooltip("Dreams batched from the same state (see the Futures panel)")
    changed, ground = imgui.checkbox("grounded: car physics + map###ground", s.ground_dream)
    if changed:
        s.set_ground_dream(ground)
    imgui.set_item_tooltip("A dream from reality drives CarRacing's own car physics, started from the real car,\n"
                           "over a map of the ground the dream has shown (road that leaves the view comes back),\n"
                           "paid by CarRacing's own rule for the road it covers (-0.1 a step, 1000/N a tile;\n"
                           "-100 and the dream is over off the playfield).\n"
                           "Off: M's dream alone, which loses track of where its car is.")  # fmt: skip
    caption("start a dream from")
    for source, label in SOURCE_LABELS.items():
        selected = s.dream_source == source
        if selected:
            imgui.push_style_color(imgui.Col_.button, imgui.get_style().color_(imgui.Col_.button_active))
        if imgui.button(f"{label}###source_{source}"):
            s.dream_source = source
            s.start_dream(source)
            if s.mode == "real":
                s.set_mode("dream")
        if selected:
            imgui.pop_style_color()
        imgui.set_item_tooltip(SOURCE_HELP[source] + " (G restarts from the selected source)")
        imgui.same_line()
    imgui.new_line()
    if s.dream_origin == "dataset" and s.dataset_frame is not None:
        show_image(app.textures, "dataset_frame", s.dataset_frame, s.dream_tally.episode, (72, 72))
        imgui.same_line()
        caption("the dataset frame\nthis dream started from")
    if s.mode == "real":
        return
    imgui.text_colored(PURPLE, f"next-step spread {s.next_step_spread():.3f}")
    imgui.set_item_tooltip("std of z_{t+1} over 16 draws at this tau, from the first dream's state")
    if s.futures > 1:
        imgui.same_line()
        imgui.text_colored(GREY, f"  futures spread {s.dream_spread():.3f}")


def gui_controls(app: PanelHost) -> None:
    """The Controls panel."""
    gui_driving(app)
    gui_dream_settings(app)
