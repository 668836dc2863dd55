"""What the panels read and write of the app: :class:`PanelHost`, which ``explorer.app.App`` fulfils. The panels
depend on this list, not on the app module that imports them, so the imports between the app and its panels point
one way."""

from __future__ import annotations

from typing import Any, Protocol

from core.stages import Stage
from explorer.input import Gamepad
from explorer.jobs import JobRunner
from explorer.panels.file_picker import FilePicker
from explorer.panels.widgets import Rect
from explorer.session import Session
from explorer.textures import TextureBank


class PanelHost(Protocol):
    """The app as the panels see it: the session, the GUI's own state, and the Training panel's stages."""

    session: Session
    """The models, the real env, the dream and the views inside (no GUI)."""
    textures: TextureBank
    rects: dict[str, Rect]
    """Screen rectangles of the pictures drawn this frame, by name (the GUI tests click them)."""
    gamepad: Gamepad
    real_time: bool
    """Cap the frame rate at CarRacing's 50 Hz."""
    futures_seen: bool
    """Set by the Futures panel when it is drawn this frame (then every dream is decoded)."""
    vision_seen: bool
    """Set by the Vision panel when it is drawn this frame (then the reconstruction is decoded)."""
    status_line: str
    checkpoint_path: str
    load_error: str
    video_path: str
    picker: FilePicker
    # -- the Training panel --
    stages: list[Stage]
    jobs: dict[str, JobRunner]
    drafts: dict[str, dict[str, Any]]
    """Each stage's settings as edited, by stage key."""
    stage_errors: dict[str, str]
    plot_metric: dict[str, str]
    log_shown: set[str]
