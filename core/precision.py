"""Whether bfloat16 pays on this CPU, measured rather than assumed.

CPUs with native bfloat16 arithmetic (AVX512-BF16, AMX) run bfloat16 convolutions and matrix products up to about
twice as fast as float32; CPUs without it (AVX2 only: most laptops and many desktops and cloud machines) emulate
them, many times slower than float32 (`dream-explorer bench` prints both on the machine at hand). The training
stages that may compute in bfloat16 (train-vision's autocast, the dream's matrix products in train-controller) ask
:func:`use_bf16` first and keep float32 where bfloat16 is not faster; the app times its own V's decode both ways
with :func:`cpu_ms` (:mod:`core.vision_runtime`). A probe is measured once per process and workload, on a small
stand-in for that workload, in a fraction of a second where bfloat16 is native and about a second where it is
emulated.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

Workload = Literal["conv_train", "matmul"]
"""``conv_train``: a training step (forward and backward) of a small conv net under CPU bfloat16 autocast with
channels-last tensors, as train-vision runs V; ``matmul``: the dream's fused LSTM-gate product for 256 dreams with
bfloat16 operands, as ``BatchedDream(bf16=True)`` runs it."""

TIMING_CALLS = 3
"""Timed calls per precision (the median counts), after one warm-up call."""


def cpu_ms(call: Callable[[], object], calls: int = TIMING_CALLS) -> float:
    """Median time per ``call`` in ms over ``calls`` calls, after one warm-up call: the CPU time of this thread with
    one torch thread (steadier than the wall clock when other work shares the cores), else the wall clock (other
    threads' work would be missed)."""
    clock = time.thread_time if torch.get_num_threads() == 1 else time.perf_counter
    call()
    times = []
    for _ in range(calls):
        start = clock()
        call()
        times.append(clock() - start)
    return 1e3 * float(np.median(times))


@dataclass(frozen=True)
class Bf16Probe:
    """One workload timed in both precisions on this CPU (ms per call, :func:`cpu_ms`)."""

    workload: Workload
    float32_ms: float
    bfloat16_ms: float

    @property
    def pays(self) -> bool:
        """bfloat16 is faster here."""
        return self.bfloat16_ms < self.float32_ms

    def describe(self) -> str:
        """One line for a stage's log, e.g. ``bfloat16 off for conv_train on this CPU (float32 4.1 ms, bfloat16
        46.0 ms per probe step)``."""
        state = "on" if self.pays else "off"
        return (
            f"bfloat16 {state} for {self.workload} on this CPU (float32 {self.float32_ms:.1f} ms, "
            f"bfloat16 {self.bfloat16_ms:.1f} ms per probe step)"
        )


def _conv_train_step(bf16: bool) -> Callable[[], object]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(), nn.Flatten())
    x = torch.rand(4, 3, 64, 64)
    if bf16:
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        net.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss = net(x).float().square().mean()
        loss.backward()

    return step


def _matmul_step(bf16: bool) -> Callable[[], object]:
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = torch.randn(256, 32 + 3 + 256, generator=g)
    w = torch.randn(32 + 3 + 256, 4 * 256, generator=g).to(dtype)
    b = torch.zeros(4 * 256, dtype=dtype)
    return lambda: torch.sigmoid(torch.addmm(b, x.to(dtype), w)).float()


_STEPS: dict[Workload, Callable[[bool], Callable[[], object]]] = {
    "conv_train": _conv_train_step,
    "matmul": _matmul_step,
}


@functools.cache
def probe_bf16(workload: Workload) -> Bf16Probe:
    """Time ``workload`` in float32 and in bfloat16 on this CPU, once per process (cached).

    A bfloat16 path that fails here (an old CPU or build without bfloat16 kernels) counts as infinitely slow.

    Raises:
        ValueError: an unknown ``workload``.
    """
    if workload not in _STEPS:
        raise ValueError(f"unknown bfloat16 workload {workload!r}; one of {sorted(_STEPS)}")
    fp32 = cpu_ms(_STEPS[workload](False))
    try:
        half = cpu_ms(_STEPS[workload](True))
    except RuntimeError as exc:
        log.info("bfloat16 %s failed here (%s): float32", workload, exc)
        half = float("inf")
    probe = Bf16Probe(workload, fp32, half)
    log.info(probe.describe())
    return probe


def use_bf16(wanted: bool, workload: Workload, say: Callable[[str], None]) -> bool:
    """Whether a stage computes ``workload`` in bfloat16: only when ``wanted`` (its ``--bf16`` flag) and faster on
    this CPU (:func:`probe_bf16`, run only when wanted); ``say`` gets the probe's one-line account for the stage's
    log."""
    if not wanted:
        return False
    probe = probe_bf16(workload)
    say(probe.describe())
    return probe.pays
