"""The pretrained checkpoints shipped in ``assets/``, checked against ``assets/manifest.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.data.datasets import file_sha256
from core.errors import CheckpointError

ASSETS_DIR = Path(os.environ.get("DREAM_EXPLORER_ASSETS", Path(__file__).resolve().parent.parent / "assets"))


@dataclass(frozen=True)
class AssetPaths:
    """Checkpoint paths of one shipped world model (V, M, C)."""

    vision: Path
    memory: Path
    controller: Path


def default_paths(vision_kind: str = "conv_vae", assets_dir: Path | None = None) -> AssetPaths:
    """Paths of the shipped world model for ``vision_kind`` (``conv_vae`` or ``dds_vae``)."""
    d = Path(assets_dir or ASSETS_DIR)
    tag = {"conv_vae": "convvae", "dds_vae": "ddsvae"}.get(vision_kind)
    if tag is None:
        raise CheckpointError(f"unknown vision kind {vision_kind!r}")
    return AssetPaths(
        vision=d / f"{tag}_vision.safetensors",
        memory=d / f"{tag}_memory.safetensors",
        controller=d / f"{tag}_controller.safetensors",
    )


def verify_assets(assets_dir: Path | None = None, names: list[str] | None = None) -> dict[str, str]:
    """Check shipped files against the manifest's SHA-256 hashes.

    Returns:
        ``{file name: sha256}`` of the files checked.

    Raises:
        CheckpointError: no manifest, a missing file, or a hash mismatch (one line, naming the file).
    """
    d = Path(assets_dir or ASSETS_DIR)
    manifest_path = d / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(
            f"no asset manifest at {manifest_path}; reinstall or run scripts/build_assets.sh"
        )
    try:
        manifest = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError):
        raise CheckpointError(f"asset manifest {manifest_path} is corrupt") from None
    checked = {}
    for name, digest in manifest.items():
        if names is not None and name not in names:
            continue
        path = d / name
        if not path.is_file():
            raise CheckpointError(f"shipped asset missing: {path}")
        actual = file_sha256(path)
        if actual != digest:
            raise CheckpointError(f"shipped asset corrupt (hash mismatch): {path}")
        checked[name] = actual
    return checked
