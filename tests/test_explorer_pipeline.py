"""The pipelined step (explorer.pipeline): one step at a time on its own thread, its time counted as the frame's,
its errors raised on the frame loop's thread; in the app, the same states and frames as stepping at frame start."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.pipeline import PhysicalKeys, StepThread
from explorer.profiler import FrameClock


def test_step_thread_runs_one_step_off_the_loop_and_returns_its_result() -> None:
    clock = FrameClock()
    steps = StepThread(clock)
    loop = threading.get_ident()
    steps.submit(lambda: threading.get_ident())
    assert steps.pending
    with pytest.raises(RuntimeError, match="still running"):
        steps.submit(lambda: None)  # steps never overlap each other
    assert steps.join() != loop and not steps.pending
    assert steps.join() is None  # nothing pending: returns at once
    steps.close()


def test_a_failed_step_raises_on_the_loop_thread_and_close_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    steps = StepThread(FrameClock())

    def broken() -> None:
        raise ValueError("bad latent")

    steps.submit(broken)
    with pytest.raises(ValueError, match="bad latent"):
        steps.join()
    steps.submit(broken)
    with caplog.at_level("ERROR", logger="explorer"):
        steps.close()
    assert "the last step failed: ValueError: bad latent" in caplog.text


def test_the_step_threads_work_is_the_frames_and_its_wait_is_not_gui() -> None:
    """A step of ~20 ms on the step thread while the loop 'swaps' for ~5 ms: model time counts in full (not as
    beside), the loop's wait is the ``step`` stage, and gui is only the loop's own time."""
    clock = FrameClock()
    steps = StepThread(clock)

    def step() -> None:
        with clock.section("model"):
            time.sleep(0.02)

    clock.end_frame()
    for _ in range(6):
        steps.submit(step)
        time.sleep(0.005)  # the swap, overlapping the step
        steps.join()
        clock.end_frame()
    steps.close()
    b, stages = clock.breakdown(), clock.stages()
    assert b["model"] >= 19.0 and b["beside"] == 0.0
    assert stages["step"] >= 12.0  # ~15 ms left of the step after the 5 ms swap
    assert 4.0 <= b["gui"] < 12.0  # the swap, not the frame minus the model (which would be ~5 less, or negative)
    assert b["frame"] < b["model"] + b["gui"]  # the step overlapped the swap


def test_physical_keys_need_a_glfw_window() -> None:
    keys = PhysicalKeys()  # no window in this process
    assert not keys.available
    with pytest.raises(RuntimeError, match="main thread of a GLFW window"):
        keys.read()


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display: run under xvfb-run")
@pytest.mark.parametrize("mode", ["split", "real"])
def test_pipelined_and_direct_frames_are_the_same(data: Path, mode: str) -> None:
    """The autopilot drives 25 frames each way from the same track and dream seeds: the same number of steps, the
    same real frame, dream latents, dream picture and telemetry, and the pipelined steps ran on the step thread."""
    from explorer.app import build_app, run

    threads: set[str] = set()
    before = torch.get_num_threads()
    seen = {}
    try:
        for pipeline in (True, False):
            app = build_app(["--assets", str(data / "assets"), "--fresh", "--frames", "25", "--mode", mode,
                             "--driver", "autopilot", "--seed", "3", "--max-fps", "0",
                             *([] if pipeline else ["--no-pipeline"])])  # fmt: skip
            tick = app.session.tick

            def counted(*args: object, _tick=tick) -> bool:  # type: ignore[no-untyped-def]
                threads.add(threading.current_thread().name)
                return _tick(*args)  # type: ignore[arg-type]

            app.session.tick = counted  # type: ignore[method-assign]
            run(app)
            s = app.session
            seen[pipeline] = (s.real_tally.step, s.real_frame.copy(), None if s.dream is None else s.dream.z.clone(),
                              s.dream_frame(), {k: v.values().tolist() for k, v in s.history.items()})  # fmt: skip
            app.session.close()
    finally:
        torch.set_num_threads(before)
    (steps_p, real_p, z_p, dream_p, hist_p), (steps_d, real_d, z_d, dream_d, hist_d) = seen[True], seen[False]
    assert steps_p == steps_d == 25
    assert np.array_equal(real_p, real_d)
    if mode == "split":
        assert z_p is not None and z_d is not None and torch.equal(z_p, z_d)
        assert np.array_equal(dream_p, dream_d)
    assert hist_p == hist_d
    assert any(name.startswith("step") for name in threads) and "MainThread" in threads
