"""Self-describing, atomically written checkpoints that never unpickle arbitrary objects.

Model weights go to a ``.safetensors`` file whose header metadata holds, as JSON, the format version,
the model kind, the model's config and the metrics at save time, so ``load_model(path)`` rebuilds the
model with no other file. Training state needed to resume a stopped stage (optimiser, scheduler, epoch,
CMA-ES state, RNG) goes to a sibling ``.resume.pt`` loaded with ``torch.load(weights_only=True)``.
Every write goes to a temporary file in the same directory and is then renamed over the target.

Checkpoint and resume state form a pair: the resume state records the SHA-256 of the checkpoint it belongs to.
:func:`save_checkpoint` with ``resume_state`` writes the new checkpoint to its temporary file, then commits
the resume state (naming the new checkpoint's hash), then renames the checkpoint into place. A kill between
the two renames leaves the new checkpoint in its temporary file, which :func:`load_resume_state` moves into
place on ``--resume``; any other mismatch is refused in one line. Temporary files are named
``.<target>.<pid>.<random>.dream-explorer.tmp``; those of processes that no longer run are deleted at the next
write to the same target.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from core.errors import CheckpointError, NonFiniteError, ResumeRepairedWarning
from core.files import (  # noqa: F401  (re-exported: the stages import them from here)
    TMP_SUFFIX,
    atomic_path,
    check_output_dir,
    check_output_file,
    stale_temporary_files,
)
from core.lineage import META_KEY as _META_KEY
from core.lineage import raw_metadata
from core.manifest import check_shipped, file_sha256  # noqa: F401  (file_sha256 re-exported)

if TYPE_CHECKING:
    from core.models import MDNRNN, Controller, VisionModel

FORMAT_VERSION = 1
MAX_PARAMETERS = 200_000_000
"""Largest model a checkpoint's config may ask for (the shipped ones have under 5M parameters; 200M float32
weights take 800 MB). Larger configs are refused before any memory is allocated."""


@dataclass(frozen=True)
class Checkpoint:
    """The contents of a model checkpoint.

    Attributes:
        kind: model kind, e.g. ``"conv_vae"``, ``"dds_vae"``, ``"mdnrnn"``, ``"controller"``.
        config: the model config as a plain dict (the fields of its config dataclass).
        metrics: scalar metrics recorded at save time (namespaced keys).
        state_dict: weights as float32 CPU tensors (fp16 storage is upcast on load).
        extra: other JSON metadata (e.g. the vision/memory checkpoints a controller was trained with).
        format_version: the file's format version.
    """

    kind: str
    config: dict[str, Any]
    metrics: dict[str, float]
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any]
    format_version: int


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    config: Any,
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    half: bool = False,
    resume_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights and self-description to ``path`` (a ``.safetensors`` file), atomically.

    Args:
        path: destination file.
        model: the module whose ``state_dict()`` is saved.
        kind: model kind registered in ``MODEL_KINDS``.
        config: the model's config dataclass (or a dict of its fields).
        metrics: scalar metrics to record.
        extra: other JSON-serialisable metadata.
        half: store floating tensors as float16 (halves the size; upcast to float32 on load).
        resume_state: training state to write to :func:`resume_path` of ``path`` as the checkpoint's pair
            (see the module docstring); it records the checkpoint's SHA-256 as ``"checkpoint_sha256"``.

    Returns:
        The path written.

    Raises:
        NonFiniteError: a floating tensor holds NaN or an infinity (nothing is written; ``path`` keeps its
            previous contents).
        OutputError: a write failed; the files keep their previous contents.
    """
    bad = first_non_finite(model)
    if bad is not None:
        raise NonFiniteError(f"refusing to write {path}: its weights hold NaN or inf ({bad}); the file is unchanged")
    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    config_dict = dataclasses.asdict(config) if is_instance else dict(config)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        if half and t.is_floating_point():
            t = t.half()
        tensors[name] = t.clone()
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config_dict,
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "extra": extra or {},
    }
    target = Path(path)
    with atomic_path(target) as tmp:  # renamed last: with a resume state, that state's rename commits the pair
        try:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        except SafetensorError as exc:  # safetensors reports I/O failures (a full disk) as its own error type
            raise OSError(str(exc).rsplit(": ", 1)[-1]) from None
        if resume_state is not None:
            save_resume_state(resume_path(target), dict(resume_state, checkpoint_sha256=file_sha256(tmp)))
    return target


def first_non_finite(model: nn.Module) -> str | None:
    """The name of the first floating parameter or buffer of ``model`` holding NaN or inf, else None."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    A shipped checkpoint is first checked against its asset manifest (:func:`core.assets.check_shipped`).

    Raises:
        CheckpointError: the file is missing, truncated, not a Dream Explorer checkpoint, or of a newer format;
            a shipped file that differs from its manifest, or a malformed manifest.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    check_shipped(p)
    try:
        header = raw_metadata(p)
        state = load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: not a valid safetensors file ({first})") from None
    if _META_KEY not in header:
        raise CheckpointError(f"{p} is a safetensors file but not a Dream Explorer checkpoint (no metadata)")
    meta = _checked_metadata(header[_META_KEY], p)
    version = meta["format_version"]
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{p}: format version {version} is newer than this program reads ({FORMAT_VERSION})")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return Checkpoint(
        kind=meta["kind"],
        config=meta["config"],
        metrics=meta["metrics"],
        state_dict=state,
        extra=meta["extra"],
        format_version=version,
    )


def _checked_metadata(text: str, path: Path) -> dict[str, Any]:
    """The metadata JSON of a checkpoint, checked field by field. Raises CheckpointError naming ``path``."""
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise CheckpointError(f"{path}: checkpoint metadata is not valid JSON") from None
    problem = None
    if not isinstance(meta, dict):
        problem = "metadata is not an object"
    elif not isinstance(meta.get("format_version"), int) or isinstance(meta["format_version"], bool):
        problem = "format_version is not an integer"
    elif not isinstance(meta.get("kind"), str):
        problem = "kind is not a string"
    else:
        meta.setdefault("config", {})
        meta.setdefault("metrics", {})
        meta.setdefault("extra", {})
        for key in ("config", "metrics", "extra"):
            if not isinstance(meta[key], dict):
                problem = f"{key} is a {type(meta[key]).__name__}, not an object"
                break
        else:
            bad = [k for k, v in meta["metrics"].items() if not isinstance(v, int | float) or isinstance(v, bool)]
            if bad:
                problem = f"metric {bad[0]!r} is not a number"
    if problem is not None:
        raise CheckpointError(f"{path}: checkpoint metadata is corrupt ({problem})")
    return meta


def _check_config_types(kind: str, config_cls: type, config: dict[str, Any]) -> None:
    """Each field of a checkpoint's model config must have its declared scalar type (JSON gives back any)."""
    import typing

    hints = typing.get_type_hints(config_cls)
    for name, value in config.items():
        hint = hints.get(name)
        if hint is bool:
            ok = isinstance(value, bool)
        elif hint is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif hint is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif hint is str:
            ok = isinstance(value, str)
        elif typing.get_origin(hint) is typing.Literal:
            ok = isinstance(value, str | int) and value in typing.get_args(hint)
        else:
            ok = isinstance(value, str | int | float | bool | type(None))
        if not ok:
            raise CheckpointError(f"config of {kind!r}: {name} = {str(value)[:40]} has the wrong type")


def _check_size(kind: str, model_cls: Callable[[Any], nn.Module], cfg: Any) -> None:
    """Build the model on the meta device (no memory) and refuse one larger than :data:`MAX_PARAMETERS`."""
    try:
        with torch.device("meta"):
            n = sum(t.numel() for t in model_cls(cfg).state_dict().values())
    except Exception:  # a model that cannot be built on the meta device is sized by building it
        return
    if n > MAX_PARAMETERS:
        raise CheckpointError(
            f"config of {kind!r} asks for {n:,} parameters (at most {MAX_PARAMETERS:,}): not a model this program made"
        )


def _model_kinds() -> dict[str, tuple[type, Callable[[Any], nn.Module]]]:
    from core.models import MODEL_KINDS

    return MODEL_KINDS


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build an untrained model of ``kind`` from a config dict.

    Raises:
        CheckpointError: unknown kind, or the config has unknown fields, fields of the wrong type or invalid
            values, or asks for more than :data:`MAX_PARAMETERS` parameters.
    """
    kinds = _model_kinds()
    if kind not in kinds:
        raise CheckpointError(f"unknown model kind {kind!r} (known: {', '.join(sorted(kinds))})")
    config_cls, model_cls = kinds[kind]
    names = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(config) - names
    if unknown:
        raise CheckpointError(f"config of {kind!r} has unknown fields: {', '.join(sorted(unknown))}")
    _check_config_types(kind, config_cls, config)
    try:
        cfg = config_cls(**config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config of {kind!r} is invalid: {exc}") from None
    _check_size(kind, model_cls, cfg)
    try:
        return model_cls(cfg)
    except (RuntimeError, ValueError, TypeError, MemoryError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"config of {kind!r} does not build a model ({first})") from None


@overload
def load_model(path: str | os.PathLike[str], kind: Literal["mdnrnn"]) -> MDNRNN: ...
@overload
def load_model(path: str | os.PathLike[str], kind: Literal["controller"]) -> Controller: ...
@overload
def load_model(path: str | os.PathLike[str], kind: tuple[Literal["conv_vae", "dds_vae"], ...]) -> VisionModel: ...
@overload
def load_model(path: str | os.PathLike[str], kind: str | tuple[str, ...] | None = None) -> nn.Module: ...
def load_model(path: str | os.PathLike[str], kind: str | tuple[str, ...] | None = None) -> nn.Module:
    """Rebuild a model from its checkpoint alone, in eval mode, on the CPU.

    Args:
        path: a ``.safetensors`` checkpoint written by :func:`save_checkpoint`.
        kind: the expected kind(s); ``None`` accepts any registered kind.

    Returns:
        The model; its ``checkpoint_metrics`` and ``checkpoint_extra`` attributes hold the saved metadata
        and ``checkpoint_path`` the file it came from.

    Raises:
        CheckpointError: unreadable file, unexpected kind, or weights that do not fit the config.
    """
    ckpt = read_checkpoint(path)
    wanted = (kind,) if isinstance(kind, str) else kind
    if wanted is not None and ckpt.kind not in wanted:
        raise CheckpointError(f"{path}: holds a {ckpt.kind!r} model, expected {' or '.join(wanted)}")
    try:
        model = build_model(ckpt.kind, ckpt.config)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the {ckpt.kind!r} config ({first})") from None
    model.eval()
    vars(model).update(checkpoint_metrics=ckpt.metrics, checkpoint_extra=ckpt.extra, checkpoint_path=str(path))
    return model


def saved_metadata(model: nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
    """The ``(metrics, extra)`` that :func:`load_model` attached to ``model`` (empty for a model built in memory)."""
    return dict(getattr(model, "checkpoint_metrics", {}) or {}), dict(getattr(model, "checkpoint_extra", {}) or {})


def resume_path(path: str | os.PathLike[str]) -> Path:
    """The training-state file that goes with checkpoint ``path``: ``x.safetensors`` -> ``x.resume.pt``."""
    p = Path(path)
    return p.with_name(p.name.removesuffix(".safetensors") + ".resume.pt")


def save_resume_state(
    path: str | os.PathLike[str], state: dict[str, Any], checkpoint: str | os.PathLike[str] | None = None
) -> Path:
    """Atomically write training state (tensors, numbers, strings, lists, dicts only) for resuming.

    Args:
        path: the ``.resume.pt`` file.
        state: the training state.
        checkpoint: the checkpoint on disk this state belongs to (unchanged since it was written); its SHA-256
            is recorded as ``"checkpoint_sha256"``. To write a new checkpoint with its state, use
            :func:`save_checkpoint` with ``resume_state``.

    Raises:
        OutputError: the write failed; ``path`` keeps its previous contents.
    """
    target = Path(path)
    if checkpoint is not None:
        state = dict(state, checkpoint_sha256=file_sha256(Path(checkpoint)))
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    return target


def check_resume_pair(resume_file: Path, state: dict[str, Any], checkpoint: str | os.PathLike[str]) -> None:
    """Check that ``checkpoint`` is the one resume state ``state`` (read from ``resume_file``) belongs to.

    A state without ``"checkpoint_sha256"`` (written before the entry existed, or before any checkpoint) is
    accepted. When the checkpoint differs and a temporary file left by a killed writer of ``checkpoint`` holds
    the recorded hash, that file is moved into place (a :class:`ResumeRepairedWarning` says so).

    Raises:
        CheckpointError: the checkpoint is missing or differs and no left-behind file matches (one line naming
            both files).
    """
    wanted = state.get("checkpoint_sha256")
    if wanted is None:
        return
    target = Path(checkpoint)
    if target.is_file() and file_sha256(target) == wanted:
        return
    for left in stale_temporary_files(target):
        if file_sha256(left) == wanted:
            os.replace(left, target)
            warnings.warn(
                f"{target} was one write behind its resume state (a run was killed between the two): "
                f"restored the checkpoint the state belongs to from {left.name}",
                ResumeRepairedWarning,
                stacklevel=2,
            )
            return
    what = "is missing" if not target.is_file() else "is not the checkpoint it belongs to (its SHA-256 differs)"
    raise CheckpointError(
        f"{resume_file} does not match {target}: the checkpoint {what}; resuming would mix weights and training "
        "state of different steps; train again without --resume"
    )


def load_resume_state(
    path: str | os.PathLike[str],
    stage: str | None = None,
    required: Mapping[str, type | tuple[type, ...]] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Read training state written by :func:`save_resume_state` without unpickling arbitrary objects.

    Args:
        path: the ``.resume.pt`` file.
        stage: the stage that must have written it (its ``"stage"`` entry; files without one, written before
            the entry existed, are judged by ``required`` alone).
        required: entries the stage reads, with their types.
        checkpoint: the checkpoint the state must belong to, checked (and repaired) by
            :func:`check_resume_pair`; call this before reading the checkpoint.

    Raises:
        CheckpointError: missing, truncated or foreign file, another stage's, an entry missing or of the
            wrong type, or a checkpoint it does not belong to (one line naming the file).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"resume state not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read resume state {p}: {first[:200]}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{p}: resume state is not a dict")
    written_by = state.get("stage")
    if stage is not None and written_by is not None and written_by != stage:
        raise CheckpointError(f"{p} is the resume state of a {written_by} run, not of {stage}")
    for key, types in (required or {}).items():
        value = state.get(key)
        if not isinstance(value, types) or isinstance(value, bool):  # no entry is a flag; True is an int
            what = "missing" if key not in state else f"a {type(value).__name__}"
            raise CheckpointError(f"{p} is not a resume state of {stage or 'this stage'} ({key!r} is {what})")
    digest = state.get("checkpoint_sha256")
    if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
        raise CheckpointError(f"{p}: resume state is corrupt (checkpoint_sha256 is not a SHA-256)")
    if checkpoint is not None:
        check_resume_pair(p, state, checkpoint)
    return state


@contextmanager
def resuming(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn the errors of restoring a resume state read from ``path`` (an optimiser or CMA-ES state of other
    sizes) into one :class:`CheckpointError` naming the file."""
    try:
        yield
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: the resume state does not fit this run ({first})") from None
