"""Float32 vs bfloat16 batched dream: speed and whether the dream stays the same dream.

Runs the same N rollouts (same seeds, same controller, same tau) through ``BatchedDream`` in both precisions
and prints steps/s (interleaved repeats, so the ratio is measured under the same load), mean +- std of the
dream return, the share of rollouts the done head ended, and the mean / std of z over all steps. Individual
rollouts differ (rounding compounds through sampling), so the comparison is between distributions.

    .venv/bin/python scripts/bench_dream_precision.py assets/convvae_memory.safetensors \
        assets/convvae_controller.safetensors --n 1024 --steps 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from core.checkpoint import load_model
from core.envs.dream import BatchedDream


@torch.no_grad()
def run(memory, controller, n: int, steps: int, tau: float, bf16: bool) -> dict[str, float]:
    dream = BatchedDream(memory, n, tau=tau, max_steps=steps, bf16=bf16)
    obs = dream.reset(list(range(n)))
    total = torch.zeros(n, dtype=torch.float64)
    ended = torch.zeros(n, dtype=torch.bool)
    z_sum = z_sq = 0.0
    count = 0
    t0 = time.perf_counter()
    for _ in range(steps):
        obs, reward, terminated, _ = dream.step(controller(obs))
        total += reward.double()
        ended |= terminated
        z_sum += float(dream.z.sum())
        z_sq += float(dream.z.pow(2).sum())
        count += dream.z.numel()
        if bool(dream.done.all()):
            break
    seconds = time.perf_counter() - t0
    mean = z_sum / count
    return {
        "steps_per_s": n * dream.steps / seconds,
        "return_mean": float(total.mean()),
        "return_std": float(total.std()),
        "terminated": float(ended.float().mean()),
        "z_mean": mean,
        "z_std": float(np.sqrt(z_sq / count - mean**2)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("memory")
    parser.add_argument("controller")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--tau", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory = load_model(args.memory, "mdnrnn").float().eval()
    controller = load_model(args.controller, "controller").float().eval()
    for r in range(args.repeats):
        for bf16 in (False, True):
            f = run(memory, controller, args.n, args.steps, args.tau, bf16)
            name = "bf16" if bf16 else "fp32"
            print(f"repeat {r} {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in f.items()), flush=True)


if __name__ == "__main__":
    main()
