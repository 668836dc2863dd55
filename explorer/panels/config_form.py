"""The config-dataclass editor of the Training and Record panels: a draft (a plain dict of field values the user
edits) per stage config, one widget per field with the field's docstring as its tooltip, browse buttons for paths,
the loaded models filled in, and the draft turned back into the config (whose checks give the one-line errors)."""

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

from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui

from explorer.panels.file_picker import FilePicker


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
            value = config_from_draft(typing.cast(type, base), value)
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
                edit_config(typing.cast(type, base), value, label_width, picker=picker)
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
