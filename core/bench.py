"""``dream-explorer bench``: throughput figures of the pipeline on this machine (printed, not asserted).

Figures: real env steps/s with 1 and N worker processes, ConvVAE training images/s (fp32 and
channels_last + bf16 autocast), MDN-RNN training steps/s, batched dream steps/s at N = 1, 64, 1024 (and 1024 with bf16 products)
(MDN sampling with reward and done heads, no decode), and ConvVAE decode latency at batch 1.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch

from core.config import check
from core.progress import Progress, ProgressFn, never_stop, no_progress


def _env_steps(n_steps: int, seed: int) -> float:
    import torch as _t

    _t.set_num_threads(1)
    from core.envs.car_racing import make_real_env

    env = make_real_env()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        _, _, term, trunc, _ = env.step(rng.uniform([-1, 0, 0], [1, 1, 0.2]).astype(np.float32))
        if term or trunc:
            env.reset()
    return time.perf_counter() - t0


def bench_env(n_steps: int, workers: int) -> float:
    """Aggregate env steps/s with ``workers`` processes each stepping ``n_steps`` (startup excluded)."""
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            return n_steps / _env_steps(n_steps, 0)
        finally:
            torch.set_num_threads(threads)  # _env_steps sets 1 thread, as in a worker
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(_env_steps, [10] * workers, range(workers)))  # warm up the workers
        t0 = time.perf_counter()
        list(pool.map(_env_steps, [n_steps] * workers, range(workers)))
        return n_steps * workers / (time.perf_counter() - t0)


def bench_vae_train(batch: int, steps: int, bf16: bool) -> float:
    """ConvVAE optimiser steps on random frames; images/s."""
    from core.models import ConvVAE, set_memory_format

    torch.manual_seed(0)
    model = ConvVAE()
    x = torch.rand(batch, 3, 64, 64)
    if bf16:
        set_memory_format(model, torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4)

    def step() -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            loss, _ = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def bench_mdn_train(batch: int, seq_len: int, steps: int) -> float:
    """MDN-RNN optimiser steps on random sequences; sequence steps (batch x seq_len) per second."""
    from core.models import MDNRNN

    torch.manual_seed(0)
    m = MDNRNN()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    b = {
        "z": torch.randn(batch, seq_len + 1, 32),
        "action": torch.rand(batch, seq_len, 3),
        "reward": torch.randn(batch, seq_len),
        "done": torch.zeros(batch, seq_len),
    }
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss, _ = m.loss(b)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    return batch * seq_len * steps / (time.perf_counter() - t0)


def bench_dream(n: int, steps: int, bf16: bool = False) -> float:
    """Batched dream steps/s (rollouts x steps per second) at ``n`` rollouts, tau = 1 (``bf16``: bfloat16
    matrix products, see :class:`core.envs.dream.BatchedDream`)."""
    from core.envs.dream import BatchedDream
    from core.models import MDNRNN

    torch.manual_seed(0)
    dream = BatchedDream(MDNRNN(), n, tau=1.0, max_steps=10**9, bf16=bf16)
    dream.reset(list(range(n)))
    action = torch.rand(n, 3)
    for _ in range(5):
        dream.step(action)
    t0 = time.perf_counter()
    for _ in range(steps):
        dream.step(action)
    return n * steps / (time.perf_counter() - t0)


def bench_grounded(n: int, steps: int, size: int = 96) -> float:
    """Milliseconds per step of N grounded dreams' map and car work (:func:`core.envs.dream_car.dream_with_car`
    without V: CarRacing's car physics, the map's write, render and ground reading), frames of side ``size``; the car
    starts from a real car 60 steps into track 3 and steers a constant arc."""
    from core.envs.car_racing import make_real_env
    from core.envs.dream_car import DreamCars, car_state
    from core.envs.dream_map import DreamMap

    env = make_real_env()
    env.reset(seed=3)
    for _ in range(60):
        env.step(np.array([0.0, 0.5, 0.0], np.float32))
    cars = DreamCars([car_state(env)] * n)
    env.close()
    world = DreamMap(n, size)
    frames = torch.rand(n, 3, size, size)
    world.reset(frames, *cars.pose())
    action = torch.tensor([[0.4, 0.5, 0.0]]).expand(n, 3)

    def step() -> None:
        cars.step(action)
        world.place(*cars.pose())
        world.composite(frames)
        cars.read_map(world)

    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    cars.close()
    return (time.perf_counter() - t0) / steps * 1000


def bench_decode(repeats: int) -> float:
    """ConvVAE decode latency at batch 1, in milliseconds (median)."""
    from core.models import ConvVAE

    model = ConvVAE().eval()
    z = torch.randn(1, 32)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 5):
            t0 = time.perf_counter()
            model.decode(z)
            times.append(time.perf_counter() - t0)
    return float(np.median(times[5:]) * 1000)


@dataclass(frozen=True)
class BenchConfig:
    """Throughput figures of this machine (printed, not asserted)."""

    workers: int = 2
    """Worker processes for the parallel env figure."""
    env_steps: int = 1500
    """Env steps per worker."""
    quick: bool = False
    """Fewer repetitions (noisier figures)."""
    json: bool = False
    """Print one JSON object instead of the table."""

    def __post_init__(self) -> None:
        check(
            self.workers >= 1 and self.env_steps >= 30,
            f"bench needs workers >= 1 and env_steps >= 30, got {self.workers} and {self.env_steps}",
        )


UNITS = {
    "env_steps_per_s": "steps/s", "env_parallel_speedup": "x", "vae_train_img_per_s": "img/s (batch 128)",
    "mdnrnn_train_steps_per_s": "seq steps/s (32 x 100)", "dream_steps_per_s": "steps/s", "vae_decode_ms": "ms",
    "grounded_step_ms": "ms per step of N dreams (map and car, no V; 96 x 96)",
}  # fmt: skip
"""Unit of each figure, by the start of its key."""


def bench(
    config: BenchConfig, *, on_progress: ProgressFn = no_progress, should_stop: threading.Event | None = None
) -> dict[str, float]:
    """Measure the figures, reporting each as it comes. Returns {figure: value} (units: :data:`UNITS`); sets
    this process's torch threads to 2. Stopping skips the figures not yet measured."""
    torch.set_num_threads(2)
    stop = should_stop or never_stop()
    q = config.quick
    steps = 5 if q else 15
    env_steps = config.env_steps // (3 if q else 1)
    measures: list[tuple[str, Callable[[], float]]] = [
        ("env_steps_per_s_1_worker", lambda: bench_env(env_steps, 1)),
        (f"env_steps_per_s_{config.workers}_workers", lambda: bench_env(env_steps, config.workers)),
        ("vae_train_img_per_s_fp32", lambda: bench_vae_train(128, steps, False)),
        ("vae_train_img_per_s_bf16_channels_last", lambda: bench_vae_train(128, steps, True)),
        ("mdnrnn_train_steps_per_s", lambda: bench_mdn_train(32, 100, 3 if q else 10)),
        *[(f"dream_steps_per_s_n{n}", lambda n=n, s=s: bench_dream(n, s // (3 if q else 1)))
          for n, s in ((1, 300), (64, 200), (1024, 100))],
        ("dream_steps_per_s_n1024_bf16", lambda: bench_dream(1024, 100 // (3 if q else 1), bf16=True)),
        ("vae_decode_ms_batch1", lambda: bench_decode(50 if q else 200)),
        *[(f"grounded_step_ms_n{n}", lambda n=n: bench_grounded(n, 20 if q else 100)) for n in (1, 4)],
    ]  # fmt: skip
    figures: dict[str, float] = {}
    for i, (key, measure) in enumerate(measures):
        if stop.is_set():
            break
        figures[key] = round(measure(), 3)
        if i == 1:
            figures["env_parallel_speedup"] = round(figures[key] / figures["env_steps_per_s_1_worker"], 3)
        on_progress(Progress("bench", i + 1, len(measures), {f"bench/{key}": figures[key]}))
    return figures


def format_figures(figures: dict[str, float]) -> str:
    """The figures as a table, one per line with its unit."""
    units = {key: next((u for k, u in UNITS.items() if key.startswith(k)), "") for key in figures}
    return "\n".join(f"{key:40s} {value:12.1f} {units[key]}" for key, value in figures.items())
