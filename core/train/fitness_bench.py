"""Time the two fitness evaluators on the same candidates: a generation dreamt through M as one batch against the
same candidates driven in the real env (``scripts/bench_controller.py``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from core.checkpoint import save_checkpoint
from core.envs.world_model import WorldModel
from core.evaluate import RealRollout, RealRolloutSpec, real_rollout_task
from core.models.controller import ControllerConfig
from core.models.mdnrnn import MDNRNN
from core.parallel import make_executor
from core.policies_wm import WorldModelFiles
from core.progress import Progress, ProgressFn, no_progress
from core.train.cmaes import CMAES
from core.train.fitness import DreamEvaluator, generation_plan


def bench_evaluators(
    vision: Path | None = None,
    memory: Path | None = None,
    *,
    population: int = 64,
    rollouts: int = 16,
    max_steps: int = 1000,
    real_rollouts: int = 4,
    workers: int = 2,
    threads: int = 2,
    tau: float = 1.15,
    on_progress: ProgressFn = no_progress,
) -> dict[str, float]:
    """Candidate-rollouts per second of the dream and the real evaluator, measured in one run.

    The dream runs one full generation (``population`` x ``rollouts`` x ``max_steps``); the real evaluator
    ``real_rollouts`` episodes of CMA-ES candidates from the same generation on ``workers`` processes, without
    early stopping, after a warm-up that loads the models in every worker. The dream uses ``threads`` torch
    threads (restored afterwards). Without ``vision``/``memory``, untrained full-size models are used, M's done
    head switched off so every dream runs the full horizon.

    Returns:
        ``bench/dream_generation_s``, ``bench/dream_rollouts_per_s``, ``bench/real_rollouts_per_s``,
        ``bench/real_seconds_per_rollout``, ``bench/speedup`` (dream / real rollouts per second).
    """
    import tempfile

    from core.models.mdnrnn import MDNRNNConfig
    from core.models.vae import ConvVAE, VAEConfig

    with tempfile.TemporaryDirectory(prefix="dream-explorer-bench-") as tmp:
        if vision is None or memory is None:
            torch.manual_seed(0)
            m = MDNRNN(MDNRNNConfig())
            with torch.no_grad():
                m.head.bias[-1] = -20.0  # done probability ~ 0: every dream runs max_steps
            vision, memory = Path(tmp) / "vision.safetensors", Path(tmp) / "memory.safetensors"
            save_checkpoint(vision, ConvVAE(VAEConfig()), kind="conv_vae", config=VAEConfig())
            save_checkpoint(memory, m, kind="mdnrnn", config=m.config)
        wm = WorldModel.load(vision, memory)
        controller_config = ControllerConfig(wm.z_dim, wm.hidden_dim)
        candidates = CMAES(np.zeros(controller_config.input_dim * 3 + 3), 0.1, population, 0).ask()
        plan = generation_plan(0, 0, rollouts, 0)
        on_progress(Progress("bench", 0, 2, message=f"dream: {population} x {rollouts} rollouts x {max_steps} steps"))
        dream = DreamEvaluator(wm.require_memory(), controller_config, tau, max_steps)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            t = time.perf_counter()
            dream.rollout_returns(candidates, plan)
            dream_s = time.perf_counter() - t
        finally:
            torch.set_num_threads(previous)
        on_progress(Progress("bench", 1, 2, {"bench/dream_generation_s": dream_s},
                             message=f"real: {real_rollouts} rollouts x {max_steps} steps on {workers} workers"))  # fmt: skip
        spec = RealRolloutSpec(WorldModelFiles.read(vision, memory), max_steps)
        with make_executor("local", workers, spec) as executor:
            warm = [RealRollout(s, candidates[0], early_stop_patience=1) for s in range(workers)]
            list(executor.map_unordered(real_rollout_task, warm))
            t = time.perf_counter()
            list(executor.map_unordered(real_rollout_task, [RealRollout(s, candidates[s % population])
                                                              for s in range(real_rollouts)]))  # fmt: skip
            real_s = time.perf_counter() - t
    dream_rate, real_rate = population * rollouts / dream_s, real_rollouts / real_s
    result = {
        "bench/dream_generation_s": dream_s,
        "bench/dream_rollouts_per_s": dream_rate,
        "bench/real_rollouts_per_s": real_rate,
        "bench/real_seconds_per_rollout": real_s / real_rollouts,
        "bench/speedup": dream_rate / real_rate,
    }
    on_progress(Progress("bench", 2, 2, result))
    return result
