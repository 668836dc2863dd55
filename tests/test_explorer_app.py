"""The app around its frame loop, without a window: flags, the settings file, stage inputs from the loaded models,
plots, screenshots."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from explorer.panels.config_form import config_from_draft

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_app_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.app import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--frames", "--screenshot", "--mode", "--profile", "--assets", "--tau", "--width"):
        assert flag in out
    assert main(["--mode", "nowhere"]) == 2


def test_app_settings_round_trip(data: Path, tmp_path: Path) -> None:
    from explorer.app import build_app

    app = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path), "--mode", "dream"])
    app.session.tau = 0.3
    app.drafts["vision"]["epochs"] = 7
    app.save_settings()
    app.session.close()
    saved = json.loads((tmp_path / "explorer.json").read_text())
    assert saved["tau"] == pytest.approx(0.3) and saved["mode"] == "dream"
    again = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path), "--tau", "1.5"])
    try:
        assert again.session.tau == 1.5 and again.session.mode == "dream" and again.drafts["vision"]["epochs"] == 7
    finally:
        again.session.close()


BAD_SETTINGS = {
    "NaN and wrong types": '{"tau": NaN, "horizon": "long", "futures": 1e400, "seed": -3, "mode": {"a": 1},'
    ' "real_time": "yes", "video_path": 5, "stages": [1, 2]}',
    "nested stage values": '{"stages": {"vision": {"epochs": "7", "lr": NaN, "val_fraction": Infinity, "data_dir": [1]}, "memory": 3}}',
    "deep nesting": '{"stages": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "moderate deep nesting": '{"stages": {"vision": ' + '{"a": ' * 30 + "1" + "}" * 30 + "}}",
    "not an object": "[1, 2, 3]",
    "not JSON": "{tau: 0.5",
    "binary": "\udcff\udcfe",
}


@pytest.mark.parametrize("case", [*BAD_SETTINGS, "a directory"])
def test_malformed_settings_fall_back_to_defaults_with_a_note(data: Path, tmp_path: Path, case: str) -> None:
    from explorer.app import build_app

    settings = tmp_path / "explorer.json"
    if case == "a directory":
        settings.mkdir()
    else:
        settings.write_bytes(BAD_SETTINGS[case].encode("utf-8", "surrogateescape"))
    app = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path)])
    try:
        s = app.session
        assert (s.tau, s.horizon, s.futures, s.seed, s.mode, app.real_time) == (0.5, 300, 1, 0, "split", True)
        vision = app.drafts["vision"]
        assert app.video_path == "runs/drive.mp4" and vision["lr"] is None and vision["val_fraction"] == 0.1
        assert vision["epochs"] == 1 and app.drafts["memory"]["epochs"] == 2  # the GUI's defaults
        level, text = app.notices.current()  # type: ignore[misc]
        assert level == logging.WARNING and text.startswith("settings: ignoring") and "\n" not in text
        app.save_settings()  # a directory in the way: a note, no crash
    finally:
        s.close()


def test_an_unusable_settings_dir_is_a_note_not_a_crash(data: Path, tmp_path: Path) -> None:
    from explorer.app import build_app

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    app = build_app(["--assets", str(data / "assets"), "--settings", str(blocker)])
    try:
        app.save_settings()
        level, text = app.notices.current()  # type: ignore[misc]
        assert level == logging.WARNING and "settings not saved" in text
        assert blocker.read_text() == "not a directory"
    finally:
        app.session.close()


def test_track_seed_persists_across_restarts(data: Path, tmp_path: Path) -> None:
    from explorer.app import build_app

    app = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path)])
    assert app.session.seed == 0
    app.session.new_track()
    app.session.new_track()
    app.save_settings()
    app.session.close()
    again = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path)])
    again.session.close()
    assert again.session.seed == 2
    flagged = build_app(["--assets", str(data / "assets"), "--settings", str(tmp_path), "--seed", "9"])
    flagged.session.close()
    assert flagged.session.seed == 9


def test_stage_inputs_default_to_the_loaded_models(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.app import build_app
    from explorer.panels.config_form import fill_loaded_models

    monkeypatch.chdir(tmp_path)  # a fresh clone: no runs/, no data/heldout
    episodes = data / "episodes"
    app = build_app(["--assets", str(data / "assets"), "--fresh", "--data-dir", str(episodes)])
    try:
        loaded = {k: str(v) for k, v in app.session.model_paths.items()}
        assert all(Path(v).is_file() for v in loaded.values())
        d = app.drafts
        assert d["encode"]["vision"] == loaded["vision"] and d["evaluate"]["controller"] == loaded["controller"]
        assert (d["divergence"]["vision"], d["divergence"]["memory"]) == (loaded["vision"], loaded["memory"])
        assert d["divergence"]["data_dir"] == str(episodes)
        assert d["iterate"]["train_controller"]["vision"] == loaded["vision"]
        assert d["encode"]["out"] == "runs/latents.npz" and d["vision"]["out"] == "runs/vision.safetensors"
        assert d["collect"]["controller"] is None and d["evaluate"]["vision"] is None  # unset stays unset
        for key, draft in d.items():  # every default input names something that exists, or is an output
            config_from_draft(app.jobs[key].spec.config_cls, draft)
        # a user's own existing path stays; the button replaces it
        own = tmp_path / "mine.safetensors"
        own.write_bytes(b"x")
        draft = {"vision": str(own), "memory": "runs/nothing.safetensors", "out": "runs/v.safetensors"}
        assert fill_loaded_models(draft, app.session.model_paths) == ["memory"] and draft["vision"] == str(own)
        assert fill_loaded_models(draft, app.session.model_paths, replace=True) == ["vision"]
        assert draft == {"vision": loaded["vision"], "memory": loaded["memory"], "out": "runs/v.safetensors"}
    finally:
        app.session.close()


def test_one_point_plots_get_limits_around_the_point() -> None:
    from explorer.panels.widgets import plot_limits_for_one_point

    x0, x1, y0, y1 = plot_limits_for_one_point(np.array([5.0]), np.array([0.25]))  # type: ignore[misc]
    assert x0 < 5 < x1 and y0 < 0.25 < y1
    assert plot_limits_for_one_point(np.array([1.0, 2.0]), np.array([0.0, 1.0])) is None
    assert plot_limits_for_one_point(np.array([]), np.array([])) is None


def test_screenshot_into_an_unwritable_place_is_a_one_line_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from explorer.app import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    for target in (tmp_path, blocker / "shot.png", tmp_path / "shot.unknown"):
        assert main(["--frames", "2", "--screenshot", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: cannot write the screenshot {target}") and "\n" not in err


def test_vision_threads_below_one_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from explorer.app import main

    assert main(["--vision-threads", "0", "--frames", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --vision-threads must be at least 1, got 0"
