"""Telemetry: the running figures of reality and the dream, the road shares, and live plots (return, speed,
reality vs dream)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from imgui_bundle import imgui, implot

from explorer.panels.widgets import BLUE, GREEN, GREY, ORANGE, PLOT_FLAGS, PURPLE, RED, decimate

if TYPE_CHECKING:
    from explorer.panels.host import PanelHost


LEGEND = implot.LegendFlags_.horizontal | implot.LegendFlags_.outside


def _line(label: str, values: np.ndarray, color: imgui.ImVec4, axis: int | None = None) -> None:
    if axis is not None:
        implot.set_axes(implot.ImAxis_.x1, axis)
    spec = implot.Spec()
    spec.line_color = color
    spec.line_weight = 1.5
    xs, ys = decimate(values)
    implot.plot_line(label, xs, ys, spec)


def _step_ticks(n: int, width: float) -> None:
    """In a plot narrower than 240 px, at most 3 ticks on the step axis of a series of ``n`` points, at round steps
    (implot's own ticks, every 40 steps or so, run into each other there)."""
    if width >= 240.0 or n < 2:
        return
    span = n - 1
    step = 10.0 ** np.floor(np.log10(span / 2.0))
    step *= next(m for m in (1, 2, 5, 10) if span / (step * m) <= 2.0)
    implot.setup_axis_ticks(implot.ImAxis_.x1, [float(v) for v in np.arange(0.0, span + 0.5, step)])


def gui_figures(app: PanelHost) -> None:
    """A small table: step, reward, return, speed and yaw rate of each side (the dream's from its car in a grounded
    dream, else where its M steps them)."""
    s = app.session
    flags = imgui.TableFlags_.sizing_fixed_fit | imgui.TableFlags_.no_host_extend_x
    if not imgui.begin_table("figures", 6, flags):
        return
    for name in ("", "step", "reward", "return", "speed", "yaw rate"):
        imgui.table_setup_column(name)
    imgui.table_headers_row()
    rows = []
    if s.mode != "dream":
        r = s.real_tally
        rows.append(("reality", BLUE, r.step, r.reward, r.ret, f"{s.speed:.1f}", f"{s.yaw_rate:+.2f}"))
    if s.mode != "real" and s.dream is not None:
        d = s.dream_tally
        dream_speed = "-" if s.dream_speed is None else f"{s.dream_speed:.1f}"
        dream_yaw = "-" if s.dream_yaw_rate is None else f"{s.dream_yaw_rate:+.2f}"
        rows.append(("dream", PURPLE, d.step, d.reward, d.ret, dream_speed, dream_yaw))
    for name, color, step, reward, ret, speed, yaw in rows:
        imgui.table_next_row()
        imgui.table_next_column()
        imgui.text_colored(color, name)
        for text in (f"{step}", f"{reward:+.2f}", f"{ret:.1f}", speed, yaw):
            imgui.table_next_column()
            imgui.text(text)
    imgui.end_table()


def gui_road(app: PanelHost) -> None:
    """One line: the road share of reality and of the dream, and whether the dream tracks reality's road."""
    road = app.session.road
    if road is None:
        return
    imgui.begin_group()
    imgui.text("road share ")
    if road.real is not None:
        imgui.same_line()
        imgui.text_colored(BLUE, f"real {road.real:.2f}")
        imgui.same_line()
        imgui.text("/")
    imgui.same_line()
    imgui.text_colored(PURPLE, f"dream {road.dream:.2f}")
    if road.tracks is not None:
        imgui.same_line()
        if road.tracks:
            imgui.text_colored(GREEN, "(tracks road)")
        else:
            imgui.text_colored(RED if road.lost else ORANGE, "(lost the road)")
    imgui.end_group()
    lost = f", off reality's road for {road.lost_steps} steps" if road.lost_steps else ""
    imgui.set_item_tooltip(
        "Share of road-grey pixels in V's input and in the decoded dream, at the model's resolution. The dream"
        f" tracks the road when its share is within +-50% of reality's (or within 0.02).\n"
        f"{road.dream_steps} dream steps since it (re)started{lost}."
    )


def gui_telemetry(app: PanelHost) -> None:
    """Figures, road shares and plots over the last steps."""
    s = app.session
    h = s.history
    gui_figures(app)
    gui_road(app)
    split = s.mode == "split" and s.dream is not None
    avail = imgui.get_content_region_avail()
    n_plots = 4 if split else 2
    size = ((avail.x - imgui.get_style().item_spacing.x * (n_plots - 1)) / n_plots, max(60.0, avail.y))
    if implot.begin_plot("##return", size, PLOT_FLAGS):
        implot.setup_axes("step", "return", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        _step_ticks(max(len(h["real_return"]), len(h["dream_return"])), size[0])
        implot.setup_legend(implot.Location_.north, LEGEND)
        if s.mode != "dream":
            _line("reality", h["real_return"].values(), BLUE)
        if s.mode != "real":
            _line("dream", h["dream_return"].values(), PURPLE)
        implot.end_plot()
    imgui.same_line()
    if split:
        if implot.begin_plot("##divergence", size, PLOT_FLAGS):
            implot.setup_axes("step", "latent RMS", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
            implot.setup_axis(implot.ImAxis_.y2, "pixel MSE", implot.AxisFlags_.auto_fit | implot.AxisFlags_.opposite)
            implot.setup_axis_format(implot.ImAxis_.y2, "%.3g")
            _step_ticks(len(h["div_latent"]), size[0])
            implot.setup_legend(implot.Location_.north, LEGEND)
            _line("latent RMS", h["div_latent"].values(), ORANGE, implot.ImAxis_.y1)
            _line("pixel MSE", h["div_pixel"].values(), GREY, implot.ImAxis_.y2)
            implot.end_plot()
        imgui.set_item_tooltip(
            "Same actions, reality vs dream: RMS distance of z_dream from z_real and MSE of the decoded dream vs"
            " V's input. The dream re-syncs every 'horizon' steps."
        )
        imgui.same_line()
        if implot.begin_plot("##road", size, PLOT_FLAGS):
            implot.setup_axes("step", "road share", implot.AxisFlags_.auto_fit, implot.AxisFlags_.none)
            implot.setup_axis_limits(implot.ImAxis_.y1, 0.0, 0.5, implot.Cond_.once)
            _step_ticks(max(len(h["road_real"]), len(h["road_dream"])), size[0])
            implot.setup_legend(implot.Location_.north, LEGEND)
            _line("reality", h["road_real"].values(), BLUE)
            _line("dream", h["road_dream"].values(), PURPLE)
            implot.end_plot()
        imgui.set_item_tooltip(
            "Share of road-grey pixels in V's input (reality) and in the decoded dream, fed the same actions."
        )
        imgui.same_line()
    spread = s.mode != "real" and s.dream is not None and s.futures > 1
    if implot.begin_plot("##speed", size, PLOT_FLAGS):
        implot.setup_axes("step", "speed", implot.AxisFlags_.auto_fit, implot.AxisFlags_.auto_fit)
        if spread:  # the futures' spread on an axis of its own (about 0.1-1, where speeds reach 100)
            implot.setup_axis(implot.ImAxis_.y2, "spread", implot.AxisFlags_.auto_fit | implot.AxisFlags_.opposite)
        _step_ticks(max(len(h["speed"]), len(h["dream_speed"]), len(h["spread"])), size[0])
        implot.setup_legend(implot.Location_.north, LEGEND)
        if s.mode != "dream":
            _line("speed", h["speed"].values(), BLUE)
        if s.mode != "real" and s.dream_speed is not None:
            _line("dream speed", h["dream_speed"].values(), PURPLE)
        if spread:
            _line("futures spread", h["spread"].values(), ORANGE, implot.ImAxis_.y2)
        implot.end_plot()
    imgui.set_item_tooltip(
        "World units per second: reality's car, and the dream's (its car's when grounded, else M's speed head)."
        + (
            " Right axis: the spread of the dream's futures (the std of z over them, averaged over its dimensions)."
            if spread
            else ""
        )
    )
