"""Small drawing helpers shared by the panels: colours, frames, bars, badges, notes, plot helpers."""

from __future__ import annotations

import numpy as np
from imgui_bundle import hello_imgui, imgui, implot

from explorer.textures import Texture, TextureBank

Rect = tuple[float, float, float, float]
"""Screen rectangle (x0, y0, x1, y1) in pixels."""

GREEN = imgui.ImVec4(0.35, 0.80, 0.45, 1.0)
BLUE = imgui.ImVec4(0.35, 0.60, 1.00, 1.0)
ORANGE = imgui.ImVec4(1.00, 0.62, 0.20, 1.0)
RED = imgui.ImVec4(0.95, 0.35, 0.35, 1.0)
GREY = imgui.ImVec4(0.60, 0.62, 0.66, 1.0)
PURPLE = imgui.ImVec4(0.72, 0.52, 1.00, 1.0)
PLOT_FLAGS = implot.Flags_.no_frame | implot.Flags_.no_menus | implot.Flags_.no_box_select | implot.Flags_.no_title
"""The panels' plots: no frame, menus, box selection or title."""
PLAY_AREA_ASPECT = 96 / 84
"""Width / height of the play area a vision model sees (the frame without its 12 HUD rows)."""


def u32(color: imgui.ImVec4, alpha: float = 1.0) -> int:
    """An ImVec4 colour as ImU32, with its alpha scaled."""
    return imgui.color_convert_float4_to_u32(imgui.ImVec4(color.x, color.y, color.z, color.w * alpha))


def show_image(textures: TextureBank, name: str, image: np.ndarray, version: object, size: tuple[float, float],
               smooth: bool = False) -> Rect:  # fmt: skip
    """Upload ``image`` (if ``version`` changed) to the texture ``name`` and draw it at ``size``.

    Returns:
        The screen rectangle the image covers (the tests compare screenshots there).
    """
    tex: Texture = textures.get(name, image, version, smooth)
    imgui.image(tex.ref, size)
    return item_rect()


def item_rect() -> Rect:
    """The screen rectangle of the last item drawn, (x0, y0, x1, y1)."""
    p0, p1 = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    return (p0.x, p0.y, p1.x, p1.y)


def caption(text: str, color: imgui.ImVec4 = GREY) -> None:
    """Dim small text above a picture."""
    imgui.text_colored(color, text)


def tau_text(tau: float) -> str:
    """The temperature as the captions show it: ``0 (mode)`` for the deterministic dream, else two decimals."""
    return "0 (mode)" if tau == 0 else f"{tau:.2f}"


def note(text: str, color: imgui.ImVec4 = ORANGE) -> None:
    """A wrapped message, e.g. why a panel is empty and how to fix it."""
    imgui.push_style_color(imgui.Col_.text, color)
    imgui.text_wrapped(text)
    imgui.pop_style_color()


def badge(text: str, color: imgui.ImVec4) -> None:
    """Text on a rounded coloured pill, on the current line."""
    pad = imgui.ImVec2(6.0, 2.0)
    size = imgui.calc_text_size(text)
    p = imgui.get_cursor_screen_pos()
    draw = imgui.get_window_draw_list()
    draw.add_rect_filled(p, (p.x + size.x + 2 * pad.x, p.y + size.y + 2 * pad.y), u32(color, 0.85), 4.0)
    draw.add_text((p.x + pad.x, p.y + pad.y), u32(imgui.ImVec4(0.05, 0.05, 0.08, 1.0)), text)
    imgui.dummy((size.x + 2 * pad.x, size.y + 2 * pad.y))


def value_bar(label: str, value: float, lo: float, hi: float, color: imgui.ImVec4, width: float) -> None:
    """A horizontal gauge of ``value`` in [lo, hi]; filled from 0 (so a signed value grows left or right)."""
    imgui.text(label)
    imgui.same_line()
    h = imgui.get_text_line_height()
    p = imgui.get_cursor_screen_pos()
    draw = imgui.get_window_draw_list()
    draw.add_rect_filled(p, (p.x + width, p.y + h), u32(GREY, 0.25), 3.0)
    span = hi - lo
    x0 = p.x + width * (0.0 - lo) / span
    x1 = p.x + width * (float(np.clip(value, lo, hi)) - lo) / span
    draw.add_rect_filled((min(x0, x1), p.y + 1), (max(x0, x1), p.y + h - 1), u32(color), 3.0)
    if lo < 0 < hi:
        draw.add_line((x0, p.y), (x0, p.y + h), u32(GREY), 1.0)
    imgui.dummy((width, h))


def decimate(values: np.ndarray, max_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` (x, y) points of a series, as block means (x: the index of each block's centre).

    Software GL pays for every pixel a plotted line covers, and a noisy 600-point line zigzags over most of its
    plot; a point per two pixels looks the same and costs a fraction.
    """
    n = len(values)
    stride = max(1, -(-n // max_points))
    m = n // stride
    if stride == 1 or m == 0:
        return np.arange(n, dtype=np.float32), values.astype(np.float32)
    blocks = values[n - m * stride :].reshape(m, stride).mean(1).astype(np.float32)
    xs = (np.arange(m, dtype=np.float32) * stride + (n - m * stride) + (stride - 1) / 2).astype(np.float32)
    return xs, blocks


def plot_limits_for_one_point(xs: np.ndarray, ys: np.ndarray) -> tuple[float, float, float, float] | None:
    """Axis limits (x0, x1, y0, y1) around a series of a single point (or of points that all coincide), or None
    when auto-fit works (it spans nothing on one point, and the plot's tick labels overlap)."""
    if len(xs) == 0 or (np.ptp(xs) > 0 and np.ptp(ys) > 0):
        return None
    x, y = float(xs[-1]), float(ys[-1])
    dx = 1.0 if np.ptp(xs) == 0 else float(np.ptp(xs)) / 2
    dy = max(abs(y) * 0.1, 1e-3) if np.ptp(ys) == 0 else float(np.ptp(ys)) / 2
    cx = x if np.ptp(xs) == 0 else float(xs.min() + xs.max()) / 2
    return (cx - dx, cx + dx, y - dy, y + dy)


def paint_background() -> None:
    """Window backgrounds are transparent (software GL fills pixels slowly and the clear colour shows through a
    docked window); a floating window paints its own so it stays readable over the others."""
    if imgui.is_window_docked():
        return
    pos, size = imgui.get_window_pos(), imgui.get_window_size()
    top = pos.y + imgui.get_frame_height()
    color = hello_imgui.get_runner_params().imgui_window_params.background_color
    imgui.get_window_draw_list().add_rect_filled((pos.x, top), (pos.x + size.x, pos.y + size.y), u32(color))


def fit(avail: imgui.ImVec2, aspect: float, max_side: float = 1e9) -> tuple[float, float]:
    """The largest (width, height) with ``width / height == aspect`` inside ``avail`` (and under ``max_side``)."""
    w = max(16.0, min(avail.x, avail.y * aspect, max_side))
    return (w, w / aspect)


# ----------------------------------------------------------------------------------------------------
# config editor
# ----------------------------------------------------------------------------------------------------
