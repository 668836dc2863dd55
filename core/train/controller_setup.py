"""The set-up of a ``train-controller`` run from its config: the initial CMA-ES mean and the dream evaluator
(:mod:`core.train.controller` runs the generations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.checkpoint import load_model
from core.data.datasets import LatentEpisodes
from core.errors import ConfigError
from core.lineage import same_model_file
from core.models.controller import Controller, ControllerConfig
from core.models.mdnrnn import MDNRNN
from core.precision import use_bf16
from core.progress import Progress, ProgressFn
from core.train.controller_config import ControllerTrainConfig
from core.train.fitness import DreamEvaluator, DreamStarts

START_POOL = 1024
"""Real starting states drawn from the latent file once per run; each generation samples from them."""


def initial_mean(config: ControllerTrainConfig, controller_config: ControllerConfig, n_params: int) -> np.ndarray:
    """The initial CMA-ES mean, float64 (n_params,): zeros, or ``init_controller``'s parameters (a V-only one
    starts a full controller with the same actions: its z weights and biases, zero weights on h).

    Raises:
        CheckpointError: ``init_controller`` is missing or not a controller. ConfigError: its sizes fit neither.
    """
    if config.init_controller is None:
        return np.zeros(n_params)
    init = load_model(config.init_controller, "controller")
    assert isinstance(init, Controller)
    if init.config == controller_config:
        return init.get_flat()
    if init.config.hidden_dim == 0 and init.config.z_dim == controller_config.z_dim:
        # A V-only controller starts a full one: its z weights and biases, zero weights on h (same actions).
        full = Controller(controller_config)
        with torch.no_grad():
            full.fc.weight.zero_()
            full.fc.weight[:, : init.config.z_dim] = init.fc.weight
            full.fc.bias.copy_(init.fc.bias)
        return full.get_flat()
    raise ConfigError(
        f"--init-controller {config.init_controller} has sizes {init.config}, this run needs {controller_config}"
    )


def dream_evaluator(
    config: ControllerTrainConfig, memory: MDNRNN, controller_config: ControllerConfig, report: ProgressFn
) -> DreamEvaluator:
    """The run's dream evaluator; with a latent file, dreams start from its real states and count as diverged
    beyond twice the largest real ``|mu|``; with ``dream_ensemble``, its Ms dream too, each from its own state after
    the same real prefixes.

    Raises:
        CheckpointError: an ensemble checkpoint that is missing or not an MDN-RNN. ConfigError: one whose sizes
        differ from M's.
    """

    def say(line: str) -> None:
        report(Progress("controller", 0, config.generations, message=line))

    members: list[MDNRNN] = []
    for path in config.dream_ensemble:
        member = load_model(path, "mdnrnn")
        assert isinstance(member, MDNRNN)
        sizes, wanted = (member.config.z_dim, member.config.hidden_dim), (memory.config.z_dim, memory.config.hidden_dim)
        if sizes != wanted:
            raise ConfigError(f"--dream-ensemble {path} has z_dim, hidden_dim {sizes}; --memory has {wanted}")
        members.append(member)
    has_latents = config.latents is not None and Path(config.latents).is_file()
    if config.latents is not None and not has_latents:
        say(f"no latent file at {config.latents}: dreams start from z ~ N(0, I), h = 0")
    bf16 = use_bf16(config.dream_bf16, "matmul", say)
    critic = {"disagreement_penalty": config.disagreement_penalty, "disagreement_free": config.disagreement_free,
              "halt_disagreement": config.halt_disagreement, "halt_penalty": config.halt_penalty}  # fmt: skip
    if config.latents is None or not has_latents:
        return DreamEvaluator(memory, controller_config, config.tau, config.max_steps, None, None,
                              bf16=bf16, members=[(m, None) for m in members], **critic)  # fmt: skip
    latents = LatentEpisodes.load(config.latents)
    if latents.vision_sha256 and not same_model_file(latents.vision_sha256, config.vision):
        say(f"warning: {config.latents} was encoded by another vision model than {config.vision}")
    starts = DreamStarts.from_latents(
        latents, memory, START_POOL, config.start_step_min, config.start_step_max, config.seed
    )
    limit = 2.0 * float(np.linalg.norm(latents.mu, axis=1).max())
    return DreamEvaluator(
        memory, controller_config, config.tau, config.max_steps, starts, limit, bf16=bf16,
        members=[(m, starts.for_memory(latents, m)) for m in members], **critic,
    )  # fmt: skip
