"""The shipped checkpoints' manifest (``manifest.json``: file name -> SHA-256) and the check every checkpoint load
passes through (:func:`check_shipped`): a checkpoint is *shipped* when its folder holds a ``manifest.json`` or its
name is a shipped name (``convvae_vision.safetensors`` ...). A shipped file whose SHA-256 differs from the
manifest's, or a manifest that is not valid JSON of the right shape, is an error (one line). A shipped name with no
manifest beside it, or a file the manifest does not list, cannot be checked: that is a one-line
:class:`AssetWarning` and the file loads (the loader still refuses truncated or foreign files).

This module depends on nothing but :mod:`core.errors`, so :mod:`core.checkpoint` (which calls the check) and
:mod:`core.assets` (which finds, verifies and exports the shipped files) both import it, and not each other both
ways.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

from core.errors import CheckpointError, DreamExplorerWarning


class AssetWarning(DreamExplorerWarning):
    """A shipped checkpoint that cannot be checked: no manifest beside it, or one that does not list it."""


MANIFEST = "manifest.json"
SHIPPED_NAME = re.compile(r"^(convvae|ddsvae)_(vision|memory|controller)\.safetensors$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """The ``{file name: sha256}`` of an asset manifest (``{"files": {...}, "bytes": {...}}``).

    Raises:
        CheckpointError: unreadable, not JSON, or not of that shape (one line naming the manifest).
    """
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        reason = "not valid JSON" if not isinstance(exc, OSError) else (exc.strerror or type(exc).__name__)
        raise CheckpointError(f"asset manifest {path} is corrupt ({reason}); reinstall or rebuild the assets") from None
    files = data.get("files") if isinstance(data, dict) else None
    problem = None
    if not isinstance(files, dict):
        problem = 'no "files" object'
    else:
        bad = [k for k, v in files.items() if not (isinstance(v, str) and _SHA256.match(v)) or "/" in k or "\\" in k]
        if bad:
            problem = f"entry {bad[0][:60]!r} is not a file name with a SHA-256"
    if problem is not None:
        raise CheckpointError(f"asset manifest {path} is malformed ({problem}); reinstall or rebuild the assets")
    assert isinstance(files, dict)
    return files


_hashes: dict[tuple[str, int, int], str] = {}
_warned: set[str] = set()


def _cached_sha256(path: Path) -> str:
    """SHA-256 of ``path``, hashed once per (path, size, modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        _hashes[key] = file_sha256(path)
    return _hashes[key]


def is_shipped(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a shipped checkpoint: its folder holds a manifest, or it has a shipped name."""
    p = Path(path)
    return bool(SHIPPED_NAME.match(p.name)) or (p.parent / MANIFEST).is_file()


def check_shipped(path: str | os.PathLike[str]) -> None:
    """Check a checkpoint about to be loaded against the asset manifest beside it, if it is shipped (see the
    module docstring); other checkpoints pass unchecked.

    Warns:
        AssetWarning: a shipped name without a manifest beside it, or a file the manifest does not list (once
            per file and process).

    Raises:
        CheckpointError: a malformed manifest, or a hash that differs from the manifest's (one line).
    """
    p = Path(path)
    if not p.is_file() or not is_shipped(p):
        return
    manifest_path = p.parent / MANIFEST
    if not manifest_path.is_file():
        problem = f"no asset manifest beside {p} ({manifest_path} is missing): its integrity is not checked"
    else:
        digest = read_manifest(manifest_path).get(p.name)
        if digest is not None:
            if _cached_sha256(p) != digest:
                raise CheckpointError(f"shipped asset corrupt (hash mismatch with {manifest_path}): {p}")
            return
        problem = f"{p} is not listed in {manifest_path}: its integrity is not checked"
    key = str(p.resolve())
    if key not in _warned:
        _warned.add(key)
        warnings.warn(
            problem + "; reinstall, or rebuild the manifest with scripts/export_assets.py", AssetWarning, stacklevel=3
        )
