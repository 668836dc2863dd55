"""A wheel built from the checkout carries every module and the shipped models, and the app installed from it
starts on them from any directory (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built without build isolation (this venv's setuptools), installed without dependencies into a
    folder that goes first on PYTHONPATH."""
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "--no-deps", "--no-build-isolation",
                            "-w", str(out / "dist")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (out / "dist").glob("dream_explorer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for d in ("core", "explorer") for p in (ROOT / d).rglob("*.py")}
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)}"
    manifest = json.loads((ROOT / "assets" / "manifest.json").read_text())
    assert {f"dream_explorer_assets/{n}" for n in manifest["files"]} <= names
    target = out / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    return target


def _run(target: Path, cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DREAM_EXPLORER_ASSETS"}
    env["PYTHONPATH"] = str(target)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_installed_package_finds_its_shipped_models_from_any_directory(installed: Path, tmp_path: Path) -> None:
    run = _run(installed, tmp_path, "-c", "import core, json; from core.assets import ASSETS_DIR, verify_assets; "
               "print(json.dumps([core.__file__, str(ASSETS_DIR), sorted(verify_assets())]))")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    module, assets, verified = json.loads(run.stdout)
    assert Path(module).is_relative_to(installed) and Path(assets) == installed / "dream_explorer_assets"
    assert len(verified) == 6  # every shipped checkpoint, its SHA-256 checked against the manifest


@pytest.mark.gui
def test_the_app_installed_from_the_wheel_opens_on_the_shipped_models(installed: Path, tmp_path: Path) -> None:
    run = _run(installed, tmp_path, "-m", "explorer.cli", "--frames", "30", "--screenshot", "shot.png")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "shot.png").stat().st_size > 10_000
