"""The shipped assets: manifest hashes, a short dream and a short real drive with the autopilot, bad assets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.assets import ASSETS_DIR, default_paths, parameter_counts, verify_assets
from core.envs.car_racing import make_real_env
from core.envs.dream import DreamEnv
from core.envs.world_model import WorldModel, WorldModelObservation
from core.errors import CheckpointError

SHIPPED = default_paths("conv_vae")
pytestmark = pytest.mark.skipif(not SHIPPED.controller.is_file(), reason="no shipped assets in this checkout")


def test_manifest_matches_and_assets_are_small() -> None:
    checked = verify_assets()
    assert SHIPPED.vision.name in checked and SHIPPED.controller.name in checked
    total = sum(p.stat().st_size for p in ASSETS_DIR.glob("*.safetensors"))
    assert total <= 50 * 2**20


def test_parameter_counts_are_the_cards() -> None:
    counts = parameter_counts()
    card = {"convvae_vision.safetensors": 4_348_547, "convvae_memory.safetensors": 384_071,
            "convvae_controller.safetensors": 867, "ddsvae_vision.safetensors": 4_039_521,
            "ddsvae_memory.safetensors": 385_352, "ddsvae_controller.safetensors": 867}  # fmt: skip
    assert counts == {name: n for name, n in card.items() if name in counts}
    assert SHIPPED.vision.name in counts


WORLD_MODELS = [kind for kind in ("conv_vae", "dds_vae") if default_paths(kind).controller.is_file()]
MIN_RETURN_250_STEPS = {"conv_vae": 160.0, "dds_vae": 138.0}
"""Return of the autopilot over the first 250 steps of held-out track 1,000,123 must exceed this, ~15% (about
ten track tiles) below the shipped files' measured 190.0 (ConvVAE, session-13 M; the session-18 controller too) and 162.7 (DDS+VAE, session 22's world model; the one before: 166.1); -25 means no track
tile at all. Measured with `dream-explorer evaluate --controller assets/convvae_controller.safetensors
--episodes 1 --seed 1000123 --max-steps 250 --workers 1` (ddsvae_ likewise); re-measure when a model is re-shipped."""


@pytest.mark.parametrize("kind", WORLD_MODELS)
def test_shipped_world_model_dreams_and_drives(kind: str) -> None:
    shipped = default_paths(kind)
    wm = WorldModel.load(shipped.vision, shipped.memory, shipped.controller)
    assert wm.controller is not None
    # a short dream from a real frame
    real = make_real_env()
    frame, _ = real.reset(seed=1_000_123)
    dream = DreamEnv(wm, tau=1.0, render_mode="rgb_array")
    obs, _ = dream.reset(seed=0, options={"frame": frame})
    frames = []
    for _ in range(30):
        obs, reward, terminated, truncated, _ = dream.step(wm.controller.act(obs))
        frames.append(dream.render())
        assert np.isfinite(obs).all() and np.isfinite(reward)
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.5  # the dream moves
    # a short real drive with the autopilot collects track tiles
    env = WorldModelObservation(real, wm)
    obs, _ = env.reset(seed=1_000_123)
    total = 0.0
    for _ in range(250):
        obs, reward, terminated, truncated, _ = env.step(wm.controller.act(obs))
        total += reward
    env.close()
    assert total > MIN_RETURN_250_STEPS[kind]


def test_corrupt_asset_gives_one_line_error(tmp_path: Path) -> None:
    for p in ASSETS_DIR.glob("*"):
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    broken = tmp_path / SHIPPED.vision.name
    broken.write_bytes(broken.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt"):
        verify_assets(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "evaluate", "--controller", str(tmp_path / SHIPPED.controller.name)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "hash mismatch" in r.stderr  # checked before reading


@pytest.mark.parametrize("kind", WORLD_MODELS)
def test_app_autopilot_drives_as_evaluate_does(kind: str) -> None:
    """The explorer's autopilot starts at the first frame like ``evaluate`` (not after the zoom-in the app
    skips for a human), so it earns the same return step for step on the same track."""
    from explorer.session import Session, SessionConfig

    shipped = default_paths(kind)
    wm = WorldModel.load(shipped.vision, shipped.memory, shipped.controller)
    env = WorldModelObservation(make_real_env(), wm)
    obs, _ = env.reset(seed=1_000_123)
    expected = 0.0
    for _ in range(120):
        obs, reward, *_ = env.step(wm.controller.act(obs))  # type: ignore[union-attr]
        expected += float(reward)
    env.close()
    session = Session(
        SessionConfig(vision_runtime="pytorch", vision_kind=kind, mode="real", driver="autopilot", seed=1_000_123)
    )
    try:
        for _ in range(120):
            session.step()
        assert session.real_tally.step == 120
        assert session.real_tally.ret == pytest.approx(expected, abs=1e-6)
    finally:
        session.close()
