"""Seeing inside the models: the latent z live and editable, V's reconstruction and error, the DDS mask, and the
grid of futures dreamt from one state."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from imgui_bundle import imgui, implot

from core.api import EVAL_GATES
from explorer.panels.widgets import (
    BLUE,
    GREY,
    ORANGE,
    PLAY_AREA_ASPECT,
    PLOT_FLAGS,
    PURPLE,
    caption,
    fit,
    item_rect,
    note,
    show_image,
    tau_text,
    u32,
)

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost

Z_LIMIT = 4.0
"""The latent plot and sliders span -Z_LIMIT .. Z_LIMIT (a unit Gaussian prior stays well inside)."""


def _bars(label: str, values: np.ndarray, shift: float, width: float, color: imgui.ImVec4) -> None:
    spec = implot.Spec()
    spec.fill_color = color
    spec.line_color = color
    xs = np.arange(len(values), dtype=np.float32) + shift
    implot.plot_bars(label, xs, values.astype(np.float32), width, spec)


def gui_latent(app: PanelHost) -> None:
    """z as bars (reality, dream, edited) and one vertical slider per dimension to edit it."""
    s = app.session
    if s.vision is None:
        note(s.model_notes["vision"])
        return
    real, dream, edit = (
        s.real_z if s.mode != "dream" else None,
        s.dream_z if s.mode != "real" else None,
        s.z_edit,
    )
    live = s.latent()
    if live is None:
        return
    avail = imgui.get_content_region_avail()
    plot_h = max(80.0, avail.y * 0.42)
    slider_h = max(50.0, avail.y * 0.24)
    if implot.begin_plot("##latent", (-1, plot_h), PLOT_FLAGS):
        implot.setup_axes("", "", implot.AxisFlags_.no_tick_labels, 0)
        implot.setup_axes_limits(-0.8, len(live) - 0.2, -Z_LIMIT, Z_LIMIT, implot.Cond_.always)
        implot.setup_legend(implot.Location_.north_east, implot.LegendFlags_.horizontal)
        shown = [(n, v, c) for n, v, c in (("reality", real, BLUE), ("dream", dream, PURPLE), ("edited", edit, ORANGE))
                 if v is not None]  # fmt: skip
        width = 0.8 / len(shown)
        for i, (name, values, color) in enumerate(shown):
            _bars(name, values, (i - (len(shown) - 1) / 2) * width, width, color)
        implot.end_plot()
    values = edit if edit is not None else live
    n = len(values)
    spacing = 2.0
    w = max(4.0, (imgui.get_content_region_avail().x - spacing * (n - 1)) / n)
    imgui.push_style_var(imgui.StyleVar_.item_spacing, (spacing, 4.0))
    imgui.push_style_var(imgui.StyleVar_.grab_min_size, 4.0)
    fill = u32(ORANGE if edit is not None else PURPLE if s.mode == "dream" else BLUE, 0.55)
    draw = imgui.get_window_draw_list()
    for i in range(n):
        if i:
            imgui.same_line()
        changed, v = imgui.v_slider_float(f"##z{i}", (w, slider_h), float(values[i]), -Z_LIMIT, Z_LIMIT, "")
        if changed:
            s.edit_latent(i, v)
        imgui.set_item_tooltip(f"z[{i}] = {values[i]:+.3f}")
        p0, p1 = imgui.get_item_rect_min(), imgui.get_item_rect_max()
        mid = (p0.y + p1.y) / 2
        y = mid - float(np.clip(values[i], -Z_LIMIT, Z_LIMIT)) / Z_LIMIT * (p1.y - p0.y) / 2
        draw.add_rect_filled((p0.x + 1, min(mid, y)), (p1.x - 1, max(mid, y)), fill)
    imgui.pop_style_var(2)
    frame = s.edited_frame()
    side = max(48.0, min(160.0, imgui.get_content_region_avail().y - 8))
    if frame is not None:
        app.rects["edited"] = show_image(app.textures, "edited", frame, s.edit_version, (side * PLAY_AREA_ASPECT, side),
                                         smooth=True)  # fmt: skip
        imgui.same_line()
    imgui.begin_group()
    if frame is None:
        caption("Drag a slider to edit z and see V decode it.")
    else:
        caption("decode(edited z)", ORANGE)
        if imgui.button("Dream from this z") and s.can_dream:
            s.start_dream(z=s.z_edit)
            if s.mode == "real":
                s.set_mode("dream")
        if imgui.button("Follow live z"):
            s.stop_editing()
    imgui.end_group()


def _picture_row(app: PanelHost, pictures: list[tuple[str, np.ndarray, str, bool]], size: tuple[float, float],
                 version: int) -> None:  # fmt: skip
    """Captioned pictures side by side: (texture name, image, caption, smooth), uploaded when ``version`` changed."""
    for i, (name, image, label, smooth) in enumerate(pictures):
        if i:
            imgui.same_line()
        imgui.begin_group()
        caption(label)
        app.rects[name] = show_image(app.textures, name, image, version, size, smooth)
        imgui.end_group()


def gui_vision(app: PanelHost) -> None:
    """V's input, reconstruction and error map; with a DDS+VAE, its mask, gated input and mini mask."""
    s = app.session
    app.vision_seen = True
    recon = s.reconstruction()
    if recon is None:
        note(s.model_notes["vision"])
        return
    gap = imgui.get_style().item_spacing.x
    avail = imgui.get_content_region_avail()
    rows = 2 if s.has_mask else 1
    line = imgui.get_text_line_height_with_spacing()
    height = min((avail.x - 2 * gap) / 3 / PLAY_AREA_ASPECT, (avail.y - rows * 2.5 * line) / rows)
    height = max(24.0, height)
    _picture_row(app, [("v_input", recon.input, "V's input", True), ("recon", recon.output, "decode(mu)", True),
                       ("error", recon.error, "|error|", False)], (height * PLAY_AREA_ASPECT, height),
                 s.recon_version)  # fmt: skip
    imgui.text(f"reconstruction MSE {recon.mse:.5f}")
    imgui.set_item_tooltip(f"Per pixel value, in [0, 1] units. The error map spans 0 (black) to {recon.max_error}"
                           " (yellow).")  # fmt: skip
    if not s.has_mask:
        return
    views = s.mask_views()
    assert views is not None
    side = min(height * PLAY_AREA_ASPECT, height + line)
    _picture_row(app, [("mask", views.mask, f"mask {100 * views.kept:.1f}%", False),
                       ("gated", views.gated, "gated input", False),
                       ("mini_mask", views.mini_mask, "mini mask", False)], (side, side), s.mask_version)  # fmt: skip
    imgui.set_item_tooltip(
        "DDS+VAE: the binary mask keeps the top 3% of input values; the gated input is\n"
        "x * mask * g (brightened x4); the mini mask is the downscaling encoder's code,\n"
        "4 channels of 16x16 in a 2x2 grid, which the mini-VAE encodes to z."
    )
    choices = list(EVAL_GATES)
    current = s.dds_eval_gates
    imgui.set_next_item_width(min(220.0, avail.x))
    changed, index = imgui.combo(
        "evaluation gates###dds_eval_gates", choices.index(current) if current in choices else 0, choices
    )
    app.rects["dds_eval_gates"] = item_rect()
    imgui.set_item_tooltip(
        "How the DDS picks its 3% outside training. deterministic (the seed work): the top-k scores,\n"
        "usually one blob. frozen-noise: one fixed draw of the training noise, scattered samples like\n"
        "those the decoder was trained on. Switching is a diagnostic: M and C were trained on the\n"
        "latents of the checkpoint's own choice."
    )
    if changed and choices[index] != current:
        s.set_dds_eval_gates(choices[index])


def gui_futures(app: PanelHost) -> None:
    """The N dreams batched from the same state, in a grid: what the temperature does to the futures."""
    s = app.session
    if s.dream is None:
        note(s.model_notes["vision"] if s.vision is None else s.model_notes["memory"] if s.memory is None
             else "Switch to the dream or split mode to dream futures.")  # fmt: skip
        return
    app.futures_seen = True
    frames = s.dream_frames()
    assert frames is not None
    caption(
        f"{s.dream.n} futures, tau {tau_text(s.tau)}, step {s.dream_tally.step}, spread {s.dream_spread():.2f}", PURPLE
    )
    imgui.set_item_tooltip("Dreams started from one state and fed the same actions; they part as the MDN samples\n"
                           "differ. Spread: the std over futures of z, averaged over its dimensions.")  # fmt: skip
    if len(frames) < s.dream.n:
        return  # all of them are decoded from the next frame on
    cols = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / cols)
    gap = imgui.get_style().item_spacing
    avail = imgui.get_content_region_avail()
    cell = fit(imgui.ImVec2((avail.x - gap.x * (cols - 1)) / cols, (avail.y - gap.y * (rows - 1)) / rows),
               PLAY_AREA_ASPECT)  # fmt: skip
    for i, frame in enumerate(frames):
        if i % cols:
            imgui.same_line()
        show_image(app.textures, f"future{i}", frame, (s.dream_version, len(frames)), cell, smooth=True)
        if i == 0:
            imgui.set_item_tooltip("the dream in the main view")
    if s.dream.n == 1:
        imgui.text_colored(GREY, "One future: raise 'futures' in the Controls panel to see several.")
