"""V's batch-1 inference on ONNX Runtime, with PyTorch as the fallback.

At batch 1 on the CPU, PyTorch's per-operator overhead dominates V's small convolutions; ONNX Runtime runs the
same graph with less of it (measured in the README: the ConvVAE's encode and decode, the DDS+VAE's). The graphs
are exported once from the loaded model with ``torch.onnx.export`` (batch size dynamic), kept in a cache folder
under a key of the weights, the config and this module's format, and checked against PyTorch on fixed inputs
before use. Where onnxruntime is missing, the export fails or the check does not pass, :class:`VisionRuntime`
runs PyTorch and says why in ``note``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor, nn

from core.config import VisionBackend
from core.models import DDSVAE, VisionModel, set_memory_format
from core.models.dds_vae import DDSMaskOutput
from core.precision import cpu_ms

log = logging.getLogger(__name__)

Backend = VisionBackend
BACKENDS: tuple[Backend, ...] = get_args(VisionBackend)
FORMAT = 1
"""Part of the cache key: bump when the exported graphs change."""
TOLERANCE = 1e-3
"""Largest absolute difference from PyTorch allowed in the check (z and [0, 1] pixels; fp32 reorderings give ~1e-6)."""
MASK_TOLERANCE = 0.001
"""Share of DDS mask pixels allowed to differ from PyTorch's in the check (top-k ties may fall either way)."""
MAX_BATCH = 64
"""Largest batch the exported decoder accepts (the futures grid and a reconstruction stay far below)."""
BF16_KINDS = ("dds_vae",)
"""V kinds whose decode may run in bfloat16 on oneDNN (the app runs them on oneDNN; the ConvVAE's decode is too
small to gain and runs on the native kernels, where bfloat16 convolutions are slow)."""
BF16_TOLERANCE = 0.02
"""Largest absolute difference of the bfloat16 decode from float32 allowed in its check ([0, 1] pixels, about 5 of
255 levels; bfloat16 keeps 8 significant bits)."""
PROBE_EVERY = 250
"""With ``wide`` set, every this many calls of a kind, PROBE_CALLS of them run on the thread count not in use, to
re-time it (the faster one on recent calls runs the others)."""
PROBE_CALLS = 3
"""Calls in a row that re-time the count not in use: the first after a while may wake sleeping threads, so the
last one's time is kept."""
TIME_SMOOTHING = 0.2
"""Weight of the newest call in the running mean of the wall time of the thread count in use."""
BF16_TIMING_CALLS = 7
"""Batch-1 decodes timed per precision (the median of their thread CPU time decides)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dream-explorer/onnx`` (``~/.cache/...`` when unset)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dream-explorer" / "onnx"


class _Encode(nn.Module):
    """frames float32 (B, 3, S, S) in [0, 1] -> mu, logvar (B, z_dim) [, mask, gated, mini_mask for a DDS+VAE]."""

    def __init__(self, vision: VisionModel) -> None:
        super().__init__()
        self.vision = vision

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.vision, DDSVAE):
            mu, logvar, selected = self.vision.encode_with_mask(x)
            return mu, logvar, *selected
        return self.vision.encode(x)


class _Decode(nn.Module):
    def __init__(self, vision: VisionModel) -> None:
        super().__init__()
        self.vision = vision

    def forward(self, z: Tensor) -> Tensor:
        return self.vision.decode(z)


def _model_key(vision: VisionModel) -> str:
    """sha256 of the weights and buffers, the config and FORMAT (and the torch version that exports)."""
    h = hashlib.sha256(f"{FORMAT} {torch.__version__} {type(vision).__name__} {vision.config!r}".encode())
    for name, tensor in vision.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:32]


def _export(module: nn.Module, arg: str, example: Tensor, path: Path) -> None:
    """Export ``module`` (whose forward takes ``arg``) at ``example``'s shape (batch 2: torch.export fixes a
    size-1 dimension) with a dynamic batch to ``path`` (written whole or not at all)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    chatty = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "torch._dynamo")]
    levels = [logger.level for logger in chatty]
    try:
        for logger in chatty:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program: Any = torch.onnx.export(
                module, (example,), None, input_names=["input"], dynamo=True, dynamic_shapes={arg: {0: batch}},
                verbose=False,
            )  # fmt: skip
    finally:
        for logger, level in zip(chatty, levels, strict=True):
            logger.setLevel(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(program.model_proto.SerializeToString())
    os.replace(tmp.name, path)


class VisionRuntime:
    """V's ``encode`` and ``decode`` for inference on ``backend`` (see the module).

    Args:
        vision: the loaded model, in eval mode; the runtime keeps using it for PyTorch and reads nothing else.
        backend: "onnxruntime" (falls back to PyTorch with a note) or "pytorch".
        cache_dir: where exported graphs are kept (default: :func:`default_cache_dir`).
        threads: ONNX Runtime's intra-op threads when ``wide`` is set (PyTorch calls, and the bfloat16 decode,
            stay on the calling thread: in the app a second torch thread did not gain); 1 keeps every call there.
            The caller sets ``wide`` only when no other model work of its own runs beside V (e.g. the app's dream
            or real mode with no training stage). Other processes may still take the cores, and then a second
            thread's spin-waits make a call many times slower: each call kind (encode or decode, per batch size)
            runs on whichever count was faster in wall time over its recent calls (:class:`ThreadChoice`).
        bf16_decode: for a V of :data:`BF16_KINDS`, decode in bfloat16 (a copy of V's weights, channels-last, on
            oneDNN) when that passes its check against float32 (:data:`BF16_TOLERANCE`) and takes less CPU time per
            decode than the float32 path on this machine (CPUs with native bfloat16, e.g. AVX512-BF16 or AMX; where
            bfloat16 is emulated it loses and float32 stays). Encoding stays float32: z feeds M and the controller.

    Attributes:
        backend: what runs the encode (and the decode unless bfloat16 does). note: why PyTorch runs where ONNX
        Runtime was asked for ("" otherwise). decode_dtype: ``torch.bfloat16`` or ``torch.float32``. wide: calls
        run on ``threads`` threads (False: one; settable at any time, read at every call).
    """

    def __init__(
        self,
        vision: VisionModel,
        backend: Backend = "onnxruntime",
        cache_dir: Path | None = None,
        threads: int = 1,
        bf16_decode: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.vision = vision
        self._encoder = _Encode(vision)
        self.backend: Backend = "pytorch"
        self.note = ""
        self._sessions: dict[tuple[str, int], Any] = {}
        self.threads = max(1, int(threads))
        self.wide = False
        self.choice = ThreadChoice(self.threads)
        if backend == "onnxruntime":
            try:
                self._open(cache_dir or default_cache_dir(), self.threads)
                self._check()
                self.backend = "onnxruntime"
            except Exception as exc:  # any failure of the optional path leaves PyTorch running
                self._sessions = {}
                if isinstance(exc, ImportError):
                    reason = "onnxruntime is not installed"
                else:
                    reason = f"ONNX Runtime failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
                self.note = f"V runs on PyTorch: {reason}"
                log.warning(self.note)
        self.decode_dtype = torch.float32
        self._bf16: VisionModel | None = None
        if bf16_decode and vision.kind in BF16_KINDS:
            self._try_bf16()

    @property
    def is_dds(self) -> bool:
        return isinstance(self.vision, DDSVAE)

    def _open(self, cache_dir: Path, threads: int) -> None:
        import onnxruntime as ort

        key = _model_key(self.vision)
        size = self.vision.input_size
        parts = {"encode": (self._encoder, "x", torch.rand(2, 3, size, size)),
                 "decode": (_Decode(self.vision), "z", torch.zeros(2, self.vision.config.z_dim))}  # fmt: skip
        for name, (module, arg, example) in parts.items():
            path = cache_dir / f"{type(self.vision).__name__.lower()}-{key}-{name}.onnx"
            for attempt in (0, 1):
                if not path.is_file() or attempt:
                    log.info("exporting V's %s to ONNX Runtime (once per model): %s", name, path)
                    _export(module.eval(), arg, example, path)
                try:
                    for n in sorted({1, threads}):
                        options = ort.SessionOptions()
                        options.intra_op_num_threads = n
                        options.inter_op_num_threads = 1
                        options.log_severity_level = 3
                        self._sessions[name, n] = ort.InferenceSession(
                            str(path), options, providers=["CPUExecutionProvider"]
                        )
                    break
                except Exception:  # a cached file cut short or foreign: export it again, once
                    if attempt:
                        raise

    def _check(self) -> None:
        """Compare with PyTorch on fixed inputs; raises RuntimeError when a difference exceeds the tolerances."""
        g = torch.Generator().manual_seed(0)
        size = self.vision.input_size
        x = torch.rand(2, 3, size, size, generator=g)
        z = torch.randn(3, self.vision.config.z_dim, generator=g)
        with torch.inference_mode():
            ref_enc = self._encoder(x)
            ref_dec = self.vision.decode(z)
        enc = self._run("encode", x)
        dec = self._run("decode", z)[0]
        errors = {"mu": (enc[0] - ref_enc[0]).abs().max(), "decode": (dec - ref_dec).abs().max()}
        for name, err in errors.items():
            if not float(err) <= TOLERANCE:
                raise RuntimeError(f"{name} differs from PyTorch by {float(err):.2g} (tolerance {TOLERANCE:g})")
        if self.is_dds:
            flipped = float((enc[2] != ref_enc[2]).float().mean())
            if flipped > MASK_TOLERANCE:
                raise RuntimeError(f"the DDS mask differs from PyTorch's in {flipped:.2%} of its pixels")

    def _try_bf16(self) -> None:
        """Decode in bfloat16 from now on if it is close to float32 and faster here (see ``bf16_decode``)."""
        try:
            bf16 = copy.deepcopy(self.vision).to(dtype=torch.bfloat16).eval()
            set_memory_format(bf16, torch.channels_last)
            z = torch.randn(3, self.vision.config.z_dim, generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                err = float((bf16.decode(z.to(torch.bfloat16)).float() - self._decode_float32(z)).abs().max())
                if not err <= BF16_TOLERANCE:
                    log.info("V decodes in float32: bfloat16 differs by %.3g (tolerance %g)", err, BF16_TOLERANCE)
                    return
                one = z[:1]
                fp32 = cpu_ms(lambda: self._decode_float32(one), BF16_TIMING_CALLS)
                half = cpu_ms(lambda: bf16.decode(one.to(torch.bfloat16)), BF16_TIMING_CALLS)
        except Exception as exc:  # an optional speed-up: any failure keeps float32
            log.info("V decodes in float32: bfloat16 failed (%s: %s)", type(exc).__name__, exc)
            return
        if half < fp32:
            self._bf16, self.decode_dtype = bf16, torch.bfloat16
        log.info("V's decode: float32 %.1f ms, bfloat16 %.1f ms CPU per frame: %s", fp32, half, self.decode_dtype)

    def _decode_float32(self, z: Tensor) -> Tensor:
        if self.backend == "pytorch" or len(z) > MAX_BATCH:
            return self.vision.decode(z)
        return self._run("decode", z)[0]

    @contextmanager
    def _threads(self, kind: tuple[str, int]) -> Iterator[int]:
        """The block runs one ONNX Runtime call of ``kind`` (graph name, batch size) on the thread count it yields:
        1 unless ``wide``, else as ``choice`` says, and is timed for it."""
        if not self.wide or self.threads == 1:
            yield 1
            return
        n, probe = self.choice.pick(kind)
        start = time.perf_counter()
        yield n
        self.choice.record(kind, n, time.perf_counter() - start, probe)

    def _run(self, name: str, x: Tensor) -> list[Tensor]:
        with self._threads((name, len(x))) as n:
            session = self._sessions[name, n]
            feed = {session.get_inputs()[0].name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
            return [torch.from_numpy(out) for out in session.run(None, feed)]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, DDSMaskOutput | None]:
        """Frames float32 (B, 3, S, S) in [0, 1] -> ``(mu, logvar, mask output)``: mu and logvar float32
        (B, z_dim), the DDS mask output for a DDS+VAE (None for a ConvVAE). Call under ``torch.inference_mode``
        for PyTorch."""
        out = self._run("encode", x) if self.backend == "onnxruntime" else self._encoder(x)
        return out[0], out[1], DDSMaskOutput(*out[2:]) if self.is_dds else None

    def decode(self, z: Tensor) -> Tensor:
        """z float32 (B, z_dim) -> frames float32 (B, 3, S, S) in [0, 1], computed in ``decode_dtype``. Call under
        ``torch.inference_mode`` for PyTorch (and with oneDNN on for bfloat16, as the app runs a V of BF16_KINDS)."""
        if self._bf16 is not None:
            return self._bf16.decode(z.to(torch.bfloat16)).float()
        return self._decode_float32(z)


class ThreadChoice:
    """Which thread count runs the next call of a kind: each count's wall time per call is kept (a running mean,
    weight TIME_SMOOTHING, for the count in use; the latest time for the other, re-timed by PROBE_CALLS calls every
    PROBE_EVERY calls), and the faster one runs. A count never timed for a kind is tried first (``threads`` before
    1); its first call starts its threads and is not timed.

    Args:
        threads: the wide count (the other one is 1).
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.seconds: dict[tuple[str, int], dict[int, float]] = {}
        self._calls: dict[tuple[str, int], int] = {}
        self._started: set[tuple[tuple[str, int], int]] = set()

    def pick(self, kind: tuple[str, int]) -> tuple[int, bool]:
        """``(thread count, whether this call re-times the count not in use)`` for the next call of ``kind``."""
        times = self.seconds.setdefault(kind, {})
        calls = self._calls[kind] = self._calls.get(kind, 0) + 1
        for n in (self.threads, 1):
            if n not in times:
                return n, False
        best = min(times, key=lambda n: times[n])
        if calls >= PROBE_EVERY and calls % PROBE_EVERY < PROBE_CALLS:
            return (1 if best != 1 else self.threads), True
        return best, False

    def record(self, kind: tuple[str, int], threads: int, seconds: float, probe: bool) -> None:
        """Add the wall time of one call of ``kind`` on ``threads`` threads."""
        if (kind, threads) not in self._started:  # its threads were started by this call
            self._started.add((kind, threads))
            return
        times = self.seconds.setdefault(kind, {})
        old = times.get(threads)
        times[threads] = seconds if old is None or probe else (1 - TIME_SMOOTHING) * old + TIME_SMOOTHING * seconds
