"""The pretrained checkpoints shipped in ``assets/``: where they are (:func:`find_assets_dir`), their paths per vision
kind, their verification against ``assets/manifest.json`` and their export. The manifest itself and the check every
checkpoint load passes through live in :mod:`core.manifest` (re-exported here).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import CheckpointError
from core.manifest import (  # noqa: F401  (re-exported: the shipped-file names users import from here)
    MANIFEST,
    AssetWarning,
    _cached_sha256,
    check_shipped,
    file_sha256,
    is_shipped,
    read_manifest,
)

ASSETS_ENV = "DREAM_EXPLORER_ASSETS"
"""Environment variable naming a folder of shipped checkpoints to use instead of the default one."""
ASSETS_PACKAGE = "dream_explorer_assets"
"""The name under which an installed wheel carries ``assets/`` (package data; see pyproject.toml)."""


def find_assets_dir() -> Path:
    """Where the shipped checkpoints are, by this rule: the folder named by ``$DREAM_EXPLORER_ASSETS``; else the
    checkout's ``assets/`` beside the ``core`` package (a clone, an editable install); else the copy an
    installed wheel carries as the package data ``dream_explorer_assets``; else the checkout's path, which then
    fails to load with a one-line error naming it."""
    if os.environ.get(ASSETS_ENV):
        return Path(os.environ[ASSETS_ENV])
    checkout = Path(__file__).resolve().parent.parent / "assets"
    if (checkout / MANIFEST).is_file():
        return checkout
    import importlib.util

    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / MANIFEST).is_file():
            return Path(location)
    return checkout


ASSETS_DIR = find_assets_dir()


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
        CheckpointError: no manifest, a malformed one, a missing file, or a hash mismatch (one line, naming the
            file).
    """
    d = Path(assets_dir or ASSETS_DIR)
    manifest_path = d / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"no asset manifest at {manifest_path}; reinstall or run scripts/build_assets.sh")
    checked = {}
    for name, digest in read_manifest(manifest_path).items():
        if names is not None and name not in names:
            continue
        path = d / name
        if not path.is_file():
            raise CheckpointError(f"shipped asset missing: {path}")
        actual = _cached_sha256(path)
        if actual != digest:
            raise CheckpointError(f"shipped asset corrupt (hash mismatch): {path}")
        checked[name] = actual
    return checked


def export_assets(
    vision: Path,
    memory: Path | None,
    controller: Path | None,
    vision_kind: str,
    assets_dir: Path | None = None,
    half: bool = True,
) -> list[Path]:
    """Copy a trained world model into ``assets/`` under its shipped names and update the manifest.

    Weights of V and M are stored as float16 when ``half`` (upcast to float32 on load); the controller stays
    float32 and its recorded V and M paths are rewritten to the sibling asset names so ``evaluate`` finds them.
    ``memory`` and ``controller`` may be None to ship a vision model alone.

    Returns:
        The files written.

    Raises:
        CheckpointError: a source checkpoint is unreadable or of the wrong kind.
    """
    from core.checkpoint import load_model, save_checkpoint, saved_metadata
    from core.models import VISION_KINDS

    d = Path(assets_dir or ASSETS_DIR)
    target = default_paths(vision_kind, d)
    written = []
    for src, dst, kinds in (
        (vision, target.vision, VISION_KINDS),
        (memory, target.memory, ("mdnrnn",)),
        (controller, target.controller, ("controller",)),
    ):
        if src is None:
            continue
        model = load_model(src, kinds)
        metrics, extra = saved_metadata(model)
        if dst == target.vision:  # M records the hash of the file it was trained on: this copy stands for it
            extra.setdefault("source_sha256", file_sha256(src))
        if dst == target.controller:
            extra.update(vision=target.vision.name, memory=target.memory.name)
        written.append(
            save_checkpoint(
                dst,
                model,
                kind=str(model.kind),
                config=model.config,
                metrics=metrics,
                extra=extra,
                half=half and dst != target.controller,
            )
        )
    write_manifest(d)
    return written


def parameter_counts(assets_dir: Path | None = None) -> dict[str, int]:
    """Parameters of every shipped checkpoint (the card's "parameters" column), by file name.

    Raises:
        CheckpointError: a file listed in the manifest is missing, corrupt or unreadable.
    """
    from core.checkpoint import load_model

    d = Path(assets_dir or ASSETS_DIR)
    return {name: sum(p.numel() for p in load_model(d / name).parameters()) for name in sorted(verify_assets(d))}


def write_manifest(assets_dir: Path | None = None) -> Path:
    """Write ``manifest.json`` with the SHA-256 and size of every ``.safetensors`` file in the assets dir."""
    from core.checkpoint import atomic_path

    d = Path(assets_dir or ASSETS_DIR)
    paths = sorted(d.glob("*.safetensors"))
    files = {p.name: file_sha256(p) for p in paths}
    sizes = {p.name: p.stat().st_size for p in paths}
    target = d / "manifest.json"
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps({"files": files, "bytes": sizes}, indent=2) + "\n")
    return target
