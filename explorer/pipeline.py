"""The next step beside the swap: frame t goes to the screen while the step shown by frame t+1 runs.

A frame of the app is: input events, one simulation step (env step, V's encode, the dream's MDN-RNN step and
decode), the panels' layout, then the swap, where software GL (Mesa's llvmpipe under Xvfb) rasterises the whole
window. The swap touches none of the session's state, so the next step can run on its own thread during it
(:class:`StepThread`); the frame loop waits for it before the next frame's panels read the session.

No frame of input lag is added: the step's keys are read just before it starts, after polling the window's input
events once more (:class:`PhysicalKeys`, GLFW's key state), so the step sees the keys a step at the start of
the next frame would have seen, and its result is on screen at the end of that frame, as without the overlap.
Where GLFW's Python binding is missing, or imgui's test engine drives the keys (it feeds imgui, not GLFW), the keys
are imgui's of the current frame (read at its start). Hotkeys and the panels' controls act between steps, as before.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from explorer.input import DriveKeys
from explorer.profiler import FrameClock

log = logging.getLogger("explorer")


class StepThread:
    """Runs one step at a time on a thread of its own, timed as the frame's own work (see
    :meth:`FrameClock.adopt_thread`); :meth:`join` waits for it on the frame loop's thread.

    Args:
        clock: the app's frame clock (the wait is timed as the frame loop's idle time and the ``step`` stage).
    """

    def __init__(self, clock: FrameClock) -> None:
        self.clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="step", initializer=clock.adopt_thread)
        self._pending: Future[Any] | None = None

    @property
    def pending(self) -> bool:
        """A step was submitted and not joined yet."""
        return self._pending is not None

    def submit(self, fn: Callable[[], Any]) -> None:
        """Start ``fn()`` on the step thread.

        Raises:
            RuntimeError: a step is still pending (join it first: steps never overlap each other).
        """
        if self._pending is not None:
            raise RuntimeError("a step is still running: join it before submitting the next")
        self._pending = self._executor.submit(fn)

    def join(self) -> Any:
        """Wait for the pending step (none: return at once) and return its result; its exception is raised here,
        on the frame loop's thread, as if the step had run there."""
        if self._pending is None:
            return None
        future, self._pending = self._pending, None
        with self.clock.waiting("step"):
            return future.result()

    def close(self) -> None:
        """Wait for a pending step (its error is logged, not raised) and stop the thread."""
        try:
            self.join()
        except Exception as exc:  # closing: the step's error has nowhere else to go
            log.error("the last step failed: %s: %s", type(exc).__name__, exc)
        self._executor.shutdown(wait=True)


def _glfw() -> Any | None:
    """GLFW's Python binding on the library the window runs on (imgui_bundle points it there), or None."""
    try:
        import glfw
    except (ImportError, OSError):  # not installed, or its library did not load
        return None
    return glfw


def imgui_drive_keys() -> DriveKeys:
    """The driving keys (arrows or WASD) as imgui saw them at the frame's start; none while a text field has the
    keyboard. Call inside a frame."""
    from imgui_bundle import imgui

    if imgui.get_io().want_text_input:
        return DriveKeys()
    down, k = imgui.is_key_down, imgui.Key
    return DriveKeys(
        left=down(k.left_arrow) or down(k.a),
        right=down(k.right_arrow) or down(k.d),
        gas=down(k.up_arrow) or down(k.w),
        brake=down(k.down_arrow) or down(k.s),
    )


class PhysicalKeys:
    """The driving keys as the keyboard holds them now: the window's input events are polled (GLFW, on the main
    thread) and the keys read from GLFW's state, not from imgui's (which is the state at the frame's start).

    :attr:`available` is False where GLFW's binding is missing or the window is not GLFW's; the caller then
    reads imgui's keys.
    """

    def __init__(self) -> None:
        self._glfw: Any = _glfw()
        self._window: Any = None
        self._owner = threading.get_ident()
        if self._glfw is None:
            return
        try:
            from imgui_bundle import hello_imgui

            address = hello_imgui.get_glfw_window_address()  # type: ignore[attr-defined]  # not in its stubs
        except Exception:  # another backend, or no window yet
            return
        if address:
            self._window = ctypes.cast(address, ctypes.POINTER(self._glfw._GLFWwindow))

    @property
    def available(self) -> bool:
        """Fresh keys can be read (GLFW's binding and window are there)."""
        return self._window is not None

    def read(self) -> DriveKeys:
        """Poll the input events and return the driving keys held now (arrows or WASD).

        Raises:
            RuntimeError: not :attr:`available`, or called off the thread that made it (GLFW's calls belong to
                the main thread).
        """
        if self._window is None or threading.get_ident() != self._owner:
            raise RuntimeError("GLFW's keys are read on the main thread of a GLFW window only")
        g = self._glfw
        g.poll_events()

        def down(*keys: int) -> bool:
            return any(g.get_key(self._window, k) == g.PRESS for k in keys)

        return DriveKeys(
            left=down(g.KEY_LEFT, g.KEY_A),
            right=down(g.KEY_RIGHT, g.KEY_D),
            gas=down(g.KEY_UP, g.KEY_W),
            brake=down(g.KEY_DOWN, g.KEY_S),
        )
