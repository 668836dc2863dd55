"""Which checkpoint file a latent file or an M came from.

``encode`` records the SHA-256 of the vision checkpoint in every latent file, ``train-memory`` passes it on into M's
metadata. A checkpoint written by ``core.assets.export_assets`` records, as ``source_sha256``, the file it was
exported from (the same weights, in float32 or rounded to float16), so it stands for that file too.

This module reads only safetensors headers and file bytes: :mod:`core.checkpoint` imports its header reader and
metadata key, and the lineage checks (``core.envs.world_model``, ``core.train.controller``) import its identities.
"""

from __future__ import annotations

import json
import os
from typing import Any

from safetensors import SafetensorError

from core.manifest import file_sha256

META_KEY = "dream_explorer"
"""Key of a Dream Explorer checkpoint's JSON metadata in the safetensors header."""


def raw_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file's header, without reading its tensors.

    Raises:
        SafetensorError, OSError: the file is missing or not a safetensors file.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def file_identities(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(SHA-256 of the file's bytes, SHA-256 of the file it was exported from or None)``: the file is read and
    hashed once. A header that cannot be read gives None as the second (the hash still raises OSError when the file
    cannot be read at all)."""
    sha = file_sha256(path)
    try:
        meta: Any = json.loads(raw_metadata(path).get(META_KEY, "{}"))
        source = meta.get("extra", {}).get("source_sha256")
    except (SafetensorError, OSError, ValueError, AttributeError):
        return sha, None
    return sha, source if isinstance(source, str) else None


def same_model_file(sha256: str, path: str | os.PathLike[str]) -> bool:
    """Whether a file recorded by its SHA-256 (in a latent file or an M's metadata) is the checkpoint at ``path``:
    the same bytes, or the file ``path`` was exported from. False when ``path`` cannot be read; never raises."""
    try:
        return sha256 in file_identities(path)
    except OSError:
        return False
