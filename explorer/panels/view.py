"""The main view: mode switch and transport buttons, the frame(s), and the HUD (who drives, action, return)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui

from explorer.panels.widgets import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    PLAY_AREA_ASPECT,
    PURPLE,
    RED,
    Rect,
    badge,
    caption,
    fit,
    note,
    show_image,
    tau_text,
    u32,
    value_bar,
)
from explorer.session import MODES

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost

DRIVER_COLORS = {"human": GREEN, "autopilot": BLUE, "random": ORANGE}
MODE_LABELS = {"real": "Real", "dream": "Dream", "split": "Split"}
MODE_HELP = {
    "real": "Drive the real CarRacing-v3 (key 1)",
    "dream": "Drive inside the world model's dream (key 2)",
    "split": "Reality and the dream side by side, fed the same actions (key 3)",
}
SOURCE_WORDS = {"real": "the real frame", "random": "a random z", "dataset": "a dataset frame", "edit": "an edited z"}
LOST_ROAD_HINT = "the dream lost the road - G restarts it from reality"
"""Shown over the dream in split mode once it has lost the road for a while (Session.road.lost)."""


def gui_toolbar(app: PanelHost) -> None:
    """Mode buttons (1/2/3), pause (Space), single step (N), reset (R), new track (T), new dream (G)."""
    s = app.session
    for mode in MODES:
        selected = s.mode == mode
        disabled = mode != "real" and not s.can_dream
        imgui.begin_disabled(disabled)
        if selected:
            imgui.push_style_color(imgui.Col_.button, imgui.get_style().color_(imgui.Col_.button_active))
        if imgui.button(f"{MODE_LABELS[mode]}###mode_{mode}"):
            s.set_mode(mode)
        if selected:
            imgui.pop_style_color()
        imgui.end_disabled()
        reason = s.model_notes["vision" if s.vision is None else "memory"] if disabled else ""
        imgui.set_item_tooltip(MODE_HELP[mode] + (f"\n{reason}" if reason else ""))
        imgui.same_line()
    imgui.text_disabled("|")
    imgui.same_line()
    label = f"{fa.ICON_FA_PLAY} Resume" if s.paused else f"{fa.ICON_FA_PAUSE} Pause"
    if imgui.button(f"{label}###pause"):
        s.paused = not s.paused
    imgui.set_item_tooltip("Pause / resume (Space)")
    imgui.same_line()
    imgui.begin_disabled(not s.paused)
    if imgui.button(f"{fa.ICON_FA_STEP_FORWARD}###step"):
        s.request_step()
    imgui.end_disabled()
    imgui.set_item_tooltip("One step while paused (N)")
    imgui.same_line()
    if imgui.button(f"{fa.ICON_FA_SYNC}###reset"):
        s.reset_real()
    imgui.set_item_tooltip("Restart this track (R)")
    imgui.same_line()
    if imgui.button(f"{fa.ICON_FA_RANDOM} New track###new_track"):
        s.new_track()
    imgui.set_item_tooltip("Next track seed (T)")
    imgui.same_line()
    imgui.text_disabled(f"track {s.seed}")
    if s.recorder.active:
        imgui.same_line()
        imgui.text_colored(RED, f"{fa.ICON_FA_CIRCLE} REC {s.recorder.steps}")


def gui_hud(app: PanelHost, width: float) -> None:
    """Who drives, the action bars, and the running figures under the frames."""
    s = app.session
    badge(f"{fa.ICON_FA_USER if s.driver == 'human' else fa.ICON_FA_CAR}  {s.driver.upper()}",
          DRIVER_COLORS[s.driver])  # fmt: skip
    imgui.set_item_tooltip("Who drives. P toggles the autopilot; any driving key takes the wheel.")
    imgui.same_line()
    if s.paused:
        badge("PAUSED", GREY)
        imgui.same_line()
    bar = max(50.0, min(120.0, (width - 420) / 3))
    value_bar("steer", float(s.action[0]), -1.0, 1.0, PURPLE, bar)
    imgui.same_line()
    value_bar("gas", float(s.action[1]), 0.0, 1.0, GREEN, bar)
    imgui.same_line()
    value_bar("brake", float(s.action[2]), 0.0, 1.0, RED, bar)
    parts = []
    if s.mode != "dream":
        r = s.real_tally
        parts.append(f"real: return {r.ret:7.1f}  reward {r.reward:+5.2f}  step {r.step:4d}  speed {s.speed:5.1f}")
    if s.mode != "real" and s.dream is not None:
        d = s.dream_tally
        parts.append(f"dream: return {d.ret:7.1f}  reward {d.reward:+5.2f}  step {d.step:4d}/{s.horizon}"
                     + ("" if s.dream_speed is None else f"  speed {s.dream_speed:5.1f}"))  # fmt: skip
    line = "    ".join(parts)
    if len(parts) > 1 and imgui.calc_text_size(line).x > imgui.get_content_region_avail().x:
        for part in parts:  # too wide for one line (split mode in a narrow panel): reality's, then the dream's
            imgui.text(part)
    else:
        imgui.text(line)


def banner(text: str, rect: Rect) -> None:
    """``text`` wrapped on a dark band along the bottom of ``rect`` (over the picture, so the layout stays put)."""
    x0, y0, x1, y1 = rect
    pad = 4.0
    wrap = max(1.0, x1 - x0 - 2 * pad)
    size = imgui.calc_text_size(text, wrap_width=wrap)
    top = max(y0, y1 - size.y - 2 * pad)
    draw = imgui.get_window_draw_list()
    draw.add_rect_filled((x0, top), (x1, y1), u32(imgui.ImVec4(0.05, 0.05, 0.08, 1.0), 0.75))
    draw.add_text(imgui.get_font(), imgui.get_font_size(), (x0 + pad, top + pad), u32(ORANGE), text, wrap)


def gui_view(app: PanelHost) -> None:
    """The frame(s) the mode runs: reality, the dream, or both side by side."""
    s = app.session
    gui_toolbar(app)
    avail = imgui.get_content_region_avail()
    hud_height = 2 * imgui.get_frame_height_with_spacing() + 8
    area = imgui.ImVec2(avail.x, max(64.0, avail.y - hud_height - imgui.get_text_line_height_with_spacing()))
    real = s.mode in ("real", "split")
    dream = s.mode in ("dream", "split") and s.dream is not None
    columns = int(real) + int(dream)
    gap = imgui.get_style().item_spacing.x
    slot = imgui.ImVec2((area.x - gap * (columns - 1)) / max(1, columns), area.y)
    if real:
        imgui.begin_group()
        caption(f"REALITY   track {s.seed}, episode {s.real_tally.episode}")
        size = fit(slot, 1.0)
        app.rects["real"] = show_image(app.textures, "real", s.real_frame, s.real_version, size)
        imgui.end_group()
    if dream:
        if real:
            imgui.same_line()
        imgui.begin_group()
        ground = "car physics + map" if s.grounded else "M alone"
        caption(f"DREAM   tau {tau_text(s.tau)}   from {SOURCE_WORDS[s.dream_origin]}, {ground}   (G: a new dream)",
                PURPLE)  # fmt: skip
        imgui.set_item_tooltip(
            "What the world model imagines from where it started, fed the same actions; it drifts "
            "from reality as its samples differ. G starts a new dream from the selected source.\n"
            "car physics + map: the dream's car moves on CarRacing's own physics over a map of the ground shown, "
            "and is paid by CarRacing's own rule for the road it covers (Controls: grounded); M alone: M's dream, "
            "whose car has no place on the ground, paid by M's reward head."
        )
        frame = s.dream_frame()
        assert frame is not None
        size = fit(slot, PLAY_AREA_ASPECT)
        app.rects["dream"] = show_image(app.textures, "dream", frame, s.dream_version, size, smooth=True)
        road = s.road
        if real and road is not None and road.lost:
            banner(LOST_ROAD_HINT, app.rects["dream"])
        imgui.end_group()
    if s.mode != "real" and s.dream is None:
        note(s.model_notes["vision"] if s.vision is None else s.model_notes["memory"])
    imgui.spacing()
    gui_hud(app, avail.x)
