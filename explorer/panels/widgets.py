"""Small drawing helpers shared by the panels: frames, bars, badges, notes, and a config-dataclass editor."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
from imgui_bundle import hello_imgui, imgui
from imgui_bundle import icons_fontawesome_4 as fa

from explorer.textures import Texture, TextureBank

if typing.TYPE_CHECKING:
    from explorer.panels.file_picker import FilePicker

Rect = tuple[float, float, float, float]
"""Screen rectangle (x0, y0, x1, y1) in pixels."""

GREEN = imgui.ImVec4(0.35, 0.80, 0.45, 1.0)
BLUE = imgui.ImVec4(0.35, 0.60, 1.00, 1.0)
ORANGE = imgui.ImVec4(1.00, 0.62, 0.20, 1.0)
RED = imgui.ImVec4(0.95, 0.35, 0.35, 1.0)
GREY = imgui.ImVec4(0.60, 0.62, 0.66, 1.0)
PURPLE = imgui.ImVec4(0.72, 0.52, 1.00, 1.0)


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
@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (the string literal that follows its annotation)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):  # fmt: skip
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _base_type(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (hint, False)."""
    args = typing.get_args(hint)
    if (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _as_text(value: Any) -> Any:
    """Paths and tuples are edited as text: ``runs/v.safetensors``, ``1, 10, 30``."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return value


def _parse_tuple(base: Any, text: Any) -> Any:
    """``"1, 10, 30"`` -> ``(1, 10, 30)`` for a ``tuple[int, ...]`` (or float) field. Raises ValueError."""
    if not isinstance(text, str):
        return text
    item = (typing.get_args(base) or (str,))[0]
    return tuple(item(part) for part in text.replace(",", " ").split())


def draft_from_config(config: Any) -> dict[str, Any]:
    """Editable values of a config dataclass instance (paths and tuples as text; a nested config as a dict)."""
    draft = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        draft[f.name] = draft_from_config(value) if dataclasses.is_dataclass(value) else _as_text(value)
    return draft


def merge_draft(draft: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Update ``draft`` in place with ``values`` (e.g. saved settings): only known fields whose value has the
    field's type (or None) and is finite, recursing into nested configs so a partial nested dict keeps the other
    defaults.

    Returns:
        The known fields whose value was refused (dotted for nested ones); unknown fields are skipped silently.
    """
    refused = []
    for k, v in values.items():
        if k not in draft:
            continue
        if isinstance(draft[k], dict):
            if isinstance(v, dict):
                refused += [f"{k}.{name}" for name in merge_draft(draft[k], v)]
            else:
                refused.append(k)
        elif isinstance(v, float) and not math.isfinite(v):
            refused.append(k)
        elif draft[k] is None or v is None or type(v) is type(draft[k]):
            draft[k] = v
        else:
            refused.append(k)
    return refused


MODEL_FIELDS = ("vision", "memory", "controller")
"""Stage inputs that name a checkpoint of the part the app has loaded under the same name."""
DATA_FIELDS = ("data_dir",)
"""Stage inputs that name a dataset directory (the app's own is the fallback)."""


def _exists(path: str | Path, directory: bool = False) -> bool:
    """The path names an existing file or directory (a name the OS refuses, e.g. with a NUL, does not)."""
    try:
        return Path(path).is_dir() if directory else Path(path).exists()
    except (OSError, ValueError):
        return False


def has_model_inputs(draft: dict[str, Any]) -> bool:
    """The draft (or a nested one) has a set MODEL_FIELDS input (a path, not unset)."""
    return any(isinstance(v, str) if k in MODEL_FIELDS else isinstance(v, dict) and has_model_inputs(v)
               for k, v in draft.items())  # fmt: skip


def fill_loaded_models(draft: dict[str, Any], loaded: dict[str, Path | None], data_dir: Path | None = None,
                       replace: bool = False) -> list[str]:  # fmt: skip
    """Point a stage's model inputs (MODEL_FIELDS, also in nested configs) at the app's loaded checkpoints.

    Args:
        draft: the stage's edited values, changed in place.
        loaded: path of each loaded part (``Session.model_paths``), None where none is loaded.
        data_dir: the app's dataset directory, for DATA_FIELDS.
        replace: replace every such input (the "use the loaded models" button); otherwise only those naming a
            file that does not exist (a fresh clone has no ``runs/``), so a user's own paths stay.

    Returns:
        The fields changed (dotted for nested ones).
    """
    changed = []
    for key, value in draft.items():
        if isinstance(value, dict):
            changed += [f"{key}.{k}" for k in fill_loaded_models(value, loaded, data_dir, replace)]
            continue
        if not isinstance(value, str) or not value:
            continue  # unset (None) inputs stay unset: the stage reads them as "not used"
        if key in MODEL_FIELDS:
            new = loaded.get(key)
        elif key in DATA_FIELDS and data_dir is not None and not replace:
            new = data_dir
        else:
            continue
        if new is None or str(new) == value or (not replace and _exists(value)):
            continue
        if key in DATA_FIELDS and not _exists(new, directory=True):
            continue
        draft[key] = str(new)
        changed.append(key)
    return changed


def config_from_draft(cls: type, draft: dict[str, Any]) -> Any:
    """Build ``cls`` from edited values. Raises ConfigError (or TypeError/ValueError) for invalid values."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in draft:
            continue
        base, _ = _base_type(hints[f.name])
        value = draft[f.name]
        if dataclasses.is_dataclass(base) and isinstance(value, dict):
            value = config_from_draft(base, value)  # type: ignore[arg-type]
        elif base is Path and value is not None:
            value = Path(value)
        elif typing.get_origin(base) is tuple:
            value = _parse_tuple(base, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def edit_config(cls: type, draft: dict[str, Any], label_width: float, skip: tuple[str, ...] = (),
                picker: FilePicker | None = None) -> None:  # fmt: skip
    """One widget per field of ``cls`` editing ``draft`` in place; a field's docstring is its tooltip.

    With a ``picker``, a path field gets a browse button: a field named ``*dir`` picks a directory, any other
    picks a file, listing the files with its current value's ending (``.safetensors``, ``.npz``, ...).
    """
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base, optional = _base_type(hints[f.name])
        value = draft.get(f.name, defaults[f.name])
        label = f.name.replace("_", " ")
        if dataclasses.is_dataclass(base) and isinstance(value, dict):  # a nested config: a tree node
            opened = imgui.tree_node(f"{label}###{f.name}")
            if docs.get(f.name):
                imgui.set_item_tooltip(docs[f.name])
            if opened:
                imgui.push_id(f.name)
                edit_config(base, value, label_width, picker=picker)  # type: ignore[arg-type]
                imgui.pop_id()
                imgui.tree_pop()
            continue
        imgui.align_text_to_frame_padding()
        imgui.text(label)
        if docs.get(f.name):
            imgui.set_item_tooltip(docs[f.name])
        imgui.same_line(label_width)
        wid = f"##{f.name}"
        if optional:
            changed, on = imgui.checkbox(f"##{f.name}_set", value is not None)
            imgui.set_item_tooltip("set, or leave unset (None)")
            if changed:
                value = _default_value(base) if on else None
            imgui.same_line()
            if value is None:
                imgui.text_disabled("unset")
                draft[f.name] = None
                continue
        imgui.set_next_item_width(-1)
        if base is bool:
            _, value = imgui.checkbox(wid, bool(value))
        elif base is int:
            _, value = imgui.input_int(wid, int(value))
        elif base is float:
            _, value = imgui.input_float(wid, float(value), 0.0, 0.0, "%.6g")
        elif typing.get_origin(base) is typing.Literal:
            choices = [str(c) for c in typing.get_args(base)]
            index = choices.index(str(value)) if str(value) in choices else 0
            _, index = imgui.combo(wid, index, choices)
            value = typing.get_args(base)[index]
        elif base is Path and picker is not None:
            style = imgui.get_style()
            button = imgui.calc_text_size(fa.ICON_FA_FOLDER_OPEN).x + 2 * style.frame_padding.x
            imgui.set_next_item_width(-(button + style.item_spacing.x))
            _, value = imgui.input_text(wid, str(_as_text(value)))
            imgui.same_line()
            directories = f.name.endswith("dir")
            suffix = "" if directories else Path(value).suffix
            picked = picker.button(f"{cls.__name__}.{f.name}", value, f"Choose {label}", (suffix,) if suffix else (),
                                   directories)  # fmt: skip
            value = value if picked is None else picked
        else:
            _, value = imgui.input_text(wid, str(_as_text(value)))
        draft[f.name] = value


def _default_value(base: Any) -> Any:
    """A value to start from when an optional field is switched on."""
    return {bool: False, int: 0, float: 0.001}.get(base, "")
