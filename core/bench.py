"""``dream-explorer bench``: throughput figures of the pipeline on this machine (printed, not asserted).

Figures: real env steps/s with 1 and N worker processes, ConvVAE training images/s (fp32 and
channels_last + bf16 autocast), MDN-RNN training steps/s, batched dream steps/s at N = 1, 64, 1024 (and 1024 with bf16 products)
(MDN sampling with reward and done heads, no decode), and ConvVAE decode latency at batch 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch


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
    from core.models import ConvVAE

    torch.manual_seed(0)
    model = ConvVAE()
    x = torch.rand(batch, 3, 64, 64)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
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


def main(argv: list[str] | None = None) -> int:
    """Print the figures (``--json`` for one JSON object). Returns 0."""
    parser = argparse.ArgumentParser(prog="dream-explorer bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the parallel env figure")
    parser.add_argument("--env-steps", type=int, default=1500, help="env steps per worker")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    q = args.quick
    figures: dict[str, float] = {}

    def show(key: str, value: float, unit: str) -> None:
        figures[key] = round(value, 3)
        if not args.json:
            print(f"{key:36s} {value:12.1f} {unit}", flush=True)

    env1 = bench_env(args.env_steps // (3 if q else 1), 1)
    show("env_steps_per_s_1_worker", env1, "steps/s")
    envn = bench_env(args.env_steps // (3 if q else 1), args.workers)
    show(f"env_steps_per_s_{args.workers}_workers", envn, "steps/s")
    show("env_parallel_speedup", envn / env1, "x")
    steps = 5 if q else 15
    show("vae_train_img_per_s_fp32", bench_vae_train(128, steps, False), "img/s (batch 128)")
    show("vae_train_img_per_s_bf16_channels_last", bench_vae_train(128, steps, True), "img/s (batch 128)")
    show("mdnrnn_train_steps_per_s", bench_mdn_train(32, 100, 3 if q else 10), "seq steps/s (32 x 100)")
    for n, s in ((1, 300), (64, 200), (1024, 100)):
        show(f"dream_steps_per_s_n{n}", bench_dream(n, s // (3 if q else 1)), "steps/s")
    show("dream_steps_per_s_n1024_bf16", bench_dream(1024, 100 // (3 if q else 1), bf16=True), "steps/s")
    show("vae_decode_ms_batch1", bench_decode(50 if q else 200), "ms")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
