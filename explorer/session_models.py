"""The session's model slots: which V, M and C are loaded, loading a checkpoint into the running app, and the
world model they assemble into (a part of :class:`explorer.session.Session`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from core.api import (
    AssetWarning,
    CheckpointError,
    ConfigError,
    WorldModel,
    default_paths,
    load_model,
    read_checkpoint,
)
from core.models import DDSVAE, set_memory_format
from core.vision_runtime import VisionRuntime
from explorer.session_parts import SessionParts
from explorer.session_state import (
    MISSING,
    ONEDNN_CHANNELS_LAST,
    VISION_KINDS,
    VISION_THREADS,
    WIDE_VISION_KINDS,
    Part,
    describe,
)

log = logging.getLogger("explorer")


@contextmanager
def _onednn(enabled: bool) -> Iterator[None]:
    """oneDNN on (if it was) or off for a block: the process-wide switch ``torch.backends.mkldnn.enabled``."""
    mkldnn: Any = torch.backends.mkldnn  # its ``enabled`` is settable; torch's stubs type it read-only
    was = mkldnn.enabled
    mkldnn.enabled = was and enabled
    try:
        yield
    finally:
        mkldnn.enabled = was


class ModelSlots(SessionParts):
    """V, M and C of a :class:`explorer.session.Session`, each optional, and the inference context every model
    section runs in. Mixed into Session; its state is set in ``Session.__init__``."""

    # ------------------------------------------------------------------------------------------------
    # models
    # ------------------------------------------------------------------------------------------------
    @contextmanager
    def _inference(self, stage: str, vision: bool = False) -> Iterator[None]:
        """A model section without autograd, timed as ``stage``, on native kernels when ``native_kernels`` is set
        (for V: unless it runs on oneDNN, ``vision_onednn``); inside :meth:`_pinned_kernels`, on the kernels
        chosen there. V runs on its runtime's threads when ``second_core_free`` and the dream does not step on a
        second thread (split mode's parallel step: there every V call keeps one thread, as the other one runs model
        work too, and a second thread's spin-waits would take its core)."""
        if vision and self.vision_runtime is not None:
            self.vision_runtime.wide = self.second_core_free and not (self._kernels_pinned or self._parallel_step)
        with self.clock.section("model"), self.clock.stage(stage), torch.inference_mode():
            if self._kernels_pinned:
                yield
                return
            native = self.native_kernels and not (vision and self.vision_onednn)
            with _onednn(not native):
                yield

    @contextmanager
    def _pinned_kernels(self) -> Iterator[None]:
        """One kernel choice for a block whose model work runs on two threads at once: the oneDNN switch is
        process-wide, so :meth:`_inference` leaves it alone in the block. V's choice holds for every model (its
        convolutions cost the most): oneDNN for a V of ONEDNN_CHANNELS_LAST, else as ``native_kernels`` says."""
        with _onednn(self.vision_onednn or not self.native_kernels):
            self._kernels_pinned = True
            try:
                yield
            finally:
                self._kernels_pinned = False

    def load_models(self, vision: Path | None, memory: Path | None, controller: Path | None) -> None:
        """Load each part that has a path; a missing or bad file leaves that part out with a note."""
        kinds: dict[Part, str | tuple[str, ...]] = {
            "vision": VISION_KINDS, "memory": ("mdnrnn",), "controller": ("controller",),
        }  # fmt: skip
        parts: tuple[tuple[Part, Path | None], ...] = (
            ("vision", vision),
            ("memory", memory),
            ("controller", controller),
        )
        for part, path in parts:
            if path is None:
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:  # e.g. a shipped file with no manifest to check
                    warnings.simplefilter("always", AssetWarning)
                    model = load_model(path, kinds[part])
            except CheckpointError as exc:
                setattr(self, part, None)
                self.model_paths[part] = Path(path)
                missing = not Path(path).is_file()
                self.model_notes[part] = MISSING[part] if missing else f"cannot load {part}: {exc}"
                log.warning("%s: %s", part, self.model_notes[part])
                continue
            setattr(self, part, model)
            self.model_paths[part] = Path(path)
            self.model_notes[part] = describe(model, Path(path))
            for w in caught:
                if issubclass(w.category, AssetWarning):
                    self.model_notes[part] += f"; warning: {w.message}"
                    log.warning("%s: %s", part, w.message)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self._assemble()

    def use_shipped(self, vision_kind: str) -> None:
        """Load the shipped world model of ``vision_kind`` (``conv_vae`` or ``dds_vae``) from the assets."""
        self.config.vision_kind = vision_kind
        self.vision = self.memory = self.controller = None
        self.model_notes = dict(MISSING)
        self.model_paths = dict.fromkeys(MISSING)
        paths = default_paths(vision_kind, self.config.assets)
        self.load_models(paths.vision, paths.memory, paths.controller)

    def load_checkpoint(self, path: str | Path) -> str:
        """Load one checkpoint into the running session, choosing the part by the kind it holds.

        Returns:
            A one-line message for the GUI.

        Raises:
            CheckpointError: unreadable file or a kind the explorer does not use.
        """
        kind = read_checkpoint(path).kind
        part: Part
        if kind in VISION_KINDS:
            part = "vision"
        elif kind == "mdnrnn":
            part = "memory"
        elif kind == "controller":
            part = "controller"
        else:
            raise CheckpointError(f"{path}: a {kind!r} checkpoint is not a vision, memory or controller model")
        self.load_models(*(Path(path) if p == part else None for p in ("vision", "memory", "controller")))
        message = f"loaded {part}: {self.model_notes[part]}"
        if self.world_model is not None and self.world_model.lineage_warning:  # M trained on another V's latents
            message += f"; warning: {self.world_model.lineage_warning}"
        log.info(message)
        return message

    def _assemble(self) -> None:
        """Rebuild the world model from the loaded parts, dropping those that do not fit, and resync."""
        self.world_model = None
        if self.vision is not None:
            for drop in ((), ("controller",), ("memory", "controller")):
                for part in drop:
                    if getattr(self, part) is not None:
                        setattr(self, part, None)
                        self.model_notes[part] = f"unloaded: it does not fit the vision model ({part} sizes differ)"
                        log.warning("%s: %s", part, self.model_notes[part])
                try:
                    self.world_model = WorldModel(self.vision, self.memory, self.controller)
                    break
                except CheckpointError:
                    continue
        self.vision_onednn = self.vision is not None and self.vision.kind in ONEDNN_CHANNELS_LAST
        if self.vision is not None:
            fmt = torch.channels_last if self.vision_onednn else torch.contiguous_format
            set_memory_format(self.vision, fmt)
        if self.vision_runtime is None or self.vision_runtime.vision is not self.vision:  # V is new (or gone)
            self._start_vision_runtime()
        self._cache.clear()
        self._track_reset()
        self.dream = None
        if self.mode != "real" and self.can_dream:
            self.start_dream()
        if not self.can_autopilot and self.driver == "autopilot":
            self.driver = "human"

    def _start_vision_runtime(self) -> None:
        """V's inference for the loaded vision model on ``config.vision_runtime`` (ONNX Runtime exports it once per
        model, in the cache folder; PyTorch runs where that fails, and the Models panel says why)."""
        if self.vision is None:
            self.vision_runtime = None
            return
        threads = self.config.vision_threads
        if threads is None:
            threads = VISION_THREADS if self.vision.kind in WIDE_VISION_KINDS else 1
        self.vision_runtime = VisionRuntime(
            self.vision, self.config.vision_runtime, threads=threads, bf16_decode=self.config.vision_bf16
        )
        note = self.model_notes["vision"].split("; runs on ")[0].split("; V runs on PyTorch")[0]
        if self.vision_runtime.note:
            self.model_notes["vision"] = f"{note}; {self.vision_runtime.note}"
        else:
            where = "ONNX Runtime" if self.vision_runtime.backend == "onnxruntime" else "PyTorch"
            bf16 = ", decodes in bfloat16" if self.vision_runtime.decode_dtype == torch.bfloat16 else ""
            self.model_notes["vision"] = f"{note}; runs on {where}{bf16}"

    @property
    def can_dream(self) -> bool:
        """V and M are loaded."""
        return self.world_model is not None and self.world_model.memory is not None

    @property
    def can_autopilot(self) -> bool:
        """C is loaded (with V, and with M when it reads h)."""
        return self.world_model is not None and self.world_model.controller is not None

    @property
    def has_mask(self) -> bool:
        """The vision model is a DDS+VAE (it has the DDS mask)."""
        return isinstance(self.vision, DDSVAE)

    @property
    def dds_eval_gates(self) -> str | None:
        """How the DDS+VAE's DDS gates in evaluation ("deterministic" or "frozen-noise"; None for a ConvVAE)."""
        return self.vision.config.eval_gates if isinstance(self.vision, DDSVAE) else None

    def set_dds_eval_gates(self, eval_gates: str) -> None:
        """Switch the DDS+VAE's evaluation gates and re-encode the current real frame (a diagnostic: M and C
        were trained on the latents of the checkpoint's own choice).

        Raises:
            ConfigError: an unknown choice, or V is not a DDS+VAE.
        """
        if not isinstance(self.vision, DDSVAE):
            raise ConfigError("evaluation gates belong to a DDS+VAE; the loaded vision model is not one")
        self.vision.set_eval_gates(eval_gates)
        self._start_vision_runtime()  # the gates are part of the exported encoder
        self._cache.clear()
        self._encode_real()
