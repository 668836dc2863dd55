"""A file picker drawn with imgui alone (a modal window listing a directory): it needs no desktop portal or
native dialog, so it works the same on a desktop, under Xvfb and inside the imgui test engine.

One :class:`FilePicker` lives in the app; a path field calls :meth:`FilePicker.button` next to its text input and
gets the chosen path back in the frame the user confirms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from imgui_bundle import icons_fontawesome_4 as fa
from imgui_bundle import imgui

from explorer.panels.widgets import GREY, RED, caption

MAX_ENTRIES = 2000
"""Most entries listed from one directory (a huge directory stays responsive; the rest are counted)."""
LIST_HEIGHT = 260.0
"""Height of the entry list in pixels."""


@dataclass(frozen=True)
class Entry:
    """One directory entry as listed: its name and whether it is a directory."""

    name: str
    is_dir: bool


def list_directory(directory: Path, suffixes: tuple[str, ...] = (), directories_only: bool = False,
                   limit: int = MAX_ENTRIES) -> tuple[list[Entry], int]:  # fmt: skip
    """The entries of ``directory`` a picker shows: sub-directories first, then files whose name ends with one of
    ``suffixes`` (any file when empty; none with ``directories_only``), each group sorted by name, case-folded;
    hidden names (a leading dot) are left out.

    Returns:
        (up to ``limit`` entries, how many more there were).

    Raises:
        OSError: the directory cannot be read (missing, not a directory, permission denied).
    """
    dirs, files = [], []
    with os.scandir(directory) as it:
        for item in it:
            if item.name.startswith("."):
                continue
            try:
                is_dir = item.is_dir()
            except OSError:
                continue
            if is_dir:
                dirs.append(Entry(item.name, True))
            elif not directories_only and (not suffixes or item.name.lower().endswith(suffixes)):
                files.append(Entry(item.name, False))
    entries = sorted(dirs, key=lambda e: e.name.casefold()) + sorted(files, key=lambda e: e.name.casefold())
    return entries[:limit], max(0, len(entries) - limit)


def shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (``runs/v.safetensors``), else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


class FilePicker:
    """A modal directory browser; one at a time is open.

    Attributes:
        key: the field the open picker belongs to (None when closed).
        directory: the directory listed.
        name: the file name typed or clicked (a new name is allowed: output files).
        suffixes: lower-case endings of the files listed (empty: every file).
        directories: the field names a directory; Choose returns the listed directory (or the clicked one).
        error: why the directory could not be listed ("" when it could).
    """

    def __init__(self) -> None:
        self.key: str | None = None
        self.directory = Path.cwd()
        self.name = ""
        self.suffixes: tuple[str, ...] = ()
        self.directories = False
        self.error = ""
        self._entries: list[Entry] = []
        self._more = 0
        self._listed: Path | None = None
        self._dir_text = ""

    def open(self, key: str, current: str, suffixes: tuple[str, ...] = (), directories: bool = False) -> None:
        """Start picking for ``key`` at the field's current value: its directory (or itself for a directory
        field) when it exists, else the nearest existing ancestor, else the working directory."""
        self.key, self.suffixes, self.directories = key, tuple(s.lower() for s in suffixes), directories
        path = Path(current).expanduser() if current and "\0" not in current else Path.cwd()
        start = path if directories else path.parent
        self.name = "" if directories else path.name if current else ""
        while not _is_dir(start) and start != start.parent:
            start = start.parent
        self._go(start if _is_dir(start) else Path.cwd())

    def _go(self, directory: Path) -> None:
        """List ``directory`` (an error line instead when it cannot be read; the previous listing stays)."""
        directory = directory.resolve()
        try:
            entries, more = list_directory(directory, self.suffixes, self.directories)
        except OSError as exc:
            self.error = f"cannot open {directory}: {exc.strerror or exc}"
            return
        self.directory, self._entries, self._more, self.error = directory, entries, more, ""
        self._listed, self._dir_text = directory, str(directory)

    def button(self, key: str, current: str, title: str, suffixes: tuple[str, ...] = (),
               directories: bool = False) -> str | None:  # fmt: skip
        """A folder button that opens the picker for the field ``key`` (unique among the app's path fields) and
        the modal itself while it is open.

        Args:
            key: the field's id.
            current: the field's current text (where the picker starts).
            title: the modal's title.
            suffixes: file endings listed (e.g. ``(".safetensors",)``); empty: every file.
            directories: pick a directory instead of a file.

        Returns:
            The chosen path (relative to the working directory when inside it) in the frame the user confirms,
            else None.
        """
        popup = f"{title}###picker_{key}"
        if imgui.button(f"{fa.ICON_FA_FOLDER_OPEN}###pick_{key}"):
            self.open(key, current, suffixes, directories)
            imgui.open_popup(popup)
        imgui.set_item_tooltip("Browse..." if not directories else "Browse for a directory...")
        if self.key != key:
            return None
        return self._modal(popup)

    def _modal(self, popup: str) -> str | None:
        """The modal window; the chosen path when confirmed this frame."""
        viewport = imgui.get_main_viewport()
        imgui.set_next_window_size(imgui.ImVec2(min(640.0, viewport.size.x * 0.9), 0), imgui.Cond_.appearing)
        imgui.set_next_window_pos(viewport.get_center(), imgui.Cond_.appearing, imgui.ImVec2(0.5, 0.5))
        if not imgui.begin_popup_modal(popup, None, imgui.WindowFlags_.no_saved_settings)[0]:
            self.key = None  # closed from outside (Escape)
            return None
        try:
            chosen = self._contents()
            if self.key is None:
                imgui.close_current_popup()
        finally:  # a failure inside still closes the popup's window, so the panel around it stays drawable
            imgui.end_popup()
        return chosen

    def _contents(self) -> str | None:
        """The modal's widgets; the chosen path when confirmed this frame (then ``key`` is None)."""
        chosen: str | None = None
        if imgui.button(f"{fa.ICON_FA_ARROW_UP}###picker_up"):
            self._go(self.directory.parent)
        imgui.set_item_tooltip("The parent directory")
        imgui.same_line()
        if imgui.button(f"{fa.ICON_FA_HOME}###picker_cwd"):
            self._go(Path.cwd())
        imgui.set_item_tooltip("The working directory")
        imgui.same_line()
        imgui.set_next_item_width(-1)
        entered, self._dir_text = imgui.input_text("###picker_dir", self._dir_text,
                                                   imgui.InputTextFlags_.enter_returns_true)  # fmt: skip
        if entered:
            self._go(Path(self._dir_text).expanduser())
        imgui.set_item_tooltip("Type a directory and press Enter")
        if imgui.begin_child("###picker_entries", imgui.ImVec2(0, LIST_HEIGHT), imgui.ChildFlags_.borders):
            for entry in list(self._entries):
                icon = fa.ICON_FA_FOLDER if entry.is_dir else fa.ICON_FA_FILE
                selected = not entry.is_dir and entry.name == self.name
                clicked, _ = imgui.selectable(f"{icon}  {entry.name}###entry_{entry.name}", selected,
                                              imgui.SelectableFlags_.allow_double_click)  # fmt: skip
                if not clicked:
                    continue
                if entry.is_dir:
                    self._go(self.directory / entry.name)
                    break
                self.name = entry.name
                if imgui.is_mouse_double_clicked(0):
                    chosen = shown_path(self.directory / self.name)
            if not self._entries:
                caption("(no sub-directory)" if self.directories else "(nothing to pick here)")
            if self._more:
                caption(f"... and {self._more} more (type a name below)")
        imgui.end_child()
        if not self.directories:
            imgui.align_text_to_frame_padding()
            imgui.text("file")
            imgui.same_line()
            imgui.set_next_item_width(-1)
            _, self.name = imgui.input_text("###picker_name", self.name)
            ends = ", ".join(self.suffixes) if self.suffixes else "any file"
            imgui.set_item_tooltip(f"Click a file or type a name (listed: {ends})")
        if self.error:
            imgui.text_colored(RED, self.error)
        else:
            caption(str(self.directory), GREY)
        ok = imgui.button("Choose###picker_ok")
        imgui.same_line()
        if imgui.button("Cancel###picker_cancel") or imgui.is_key_pressed(imgui.Key.escape):
            self.key = None
        if ok:
            if self.directories:
                chosen = shown_path(self.directory)
            elif self.name.strip():
                chosen = shown_path(self.directory / self.name.strip())
            else:
                self.error = "click a file or type a name"
        if chosen is not None:
            self.key = None
        return chosen


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False
