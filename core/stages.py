"""The one list of the pipeline's stages. The CLI builds its subcommands from it and the app's Training panel
its tabs; each stage is named once here, with its config, its function and the line that describes it.

Every stage function has the signature ``stage(config, *, on_progress, should_stop) -> result`` (see
:mod:`core.api`); it is named by a ``"module:function"`` string and imported when it runs, so a stage process
(spawned) resolves it by name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.api import (
    CollectConfig,
    ControllerTrainConfig,
    DistillConfig,
    DivergenceConfig,
    DreamVideoConfig,
    EncodeConfig,
    EvaluateConfig,
    IterateConfig,
    MemoryTrainConfig,
    VisionTrainConfig,
)
from core.bench import BenchConfig
from core.compare import CompareVisionConfig
from core.metrics_log import logging_progress
from core.progress import ProgressFn


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline.

    Attributes:
        name: the CLI subcommand (``train-vision``).
        key: the short key of the app's tab and saved settings (``vision``).
        title: the app's tab title.
        config_cls: its frozen config dataclass (CLI flags and the app's fields are built from it).
        function: ``"module:function"`` of the stage, imported when it runs (tests plug in their own).
        help: one line: the CLI's subcommand list and the line under the app's tab title.
        defaults: config values the app starts from where they differ from the dataclass defaults (small runs).
        in_app: whether the Training panel offers it (the video, the vision comparison and the benchmark are
            CLI-only).
    """

    name: str
    key: str
    title: str
    config_cls: type
    function: str
    help: str
    defaults: dict[str, Any] = field(default_factory=dict)
    in_app: bool = True

    def resolve(self) -> Callable[..., Any]:
        """Import the stage function. Raises ImportError / AttributeError when it does not exist."""
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)

    def run(self, config: Any, *, on_progress: ProgressFn, should_stop: threading.Event) -> Any:
        """Run the stage on ``config``, logging its metrics beside its output as it goes
        (:mod:`core.metrics_log`). Returns what the stage returns and raises what it raises."""
        function = self.resolve()
        report, log = logging_progress(config, on_progress)
        try:
            return function(config, on_progress=report, should_stop=should_stop)
        finally:
            if log is not None:
                log.close()


STAGES: tuple[Stage, ...] = (
    Stage("collect", "collect", "Collect", CollectConfig, "core.api:collect",
          "Record real CarRacing-v3 episodes (random exploration, or a controller with noise).", {"episodes": 10}),
    Stage("train-vision", "vision", "Vision", VisionTrainConfig, "core.api:train_vision",
          "Train V (ConvVAE, or DDS+VAE: phase 1, then phase 2 on the same --out).", {"epochs": 1}),
    Stage("encode", "encode", "Encode", EncodeConfig, "core.api:train_encode",
          "Encode every episode frame to (mu, logvar) with the trained V."),
    Stage("train-memory", "memory", "Memory", MemoryTrainConfig, "core.api:train_memory",
          "Train M, the MDN-RNN with reward and done heads, on the latents.", {"epochs": 2}),
    Stage("train-controller", "controller", "Controller", ControllerTrainConfig, "core.api:train_controller",
          "Train C with CMA-ES, in the dream (batched) or in the real env.", {"generations": 20}),
    Stage("distill-controller", "distill", "Distill", DistillConfig, "core.api:distill_controller",
          "Fit C on this V and M to a teacher controller's actions on real tracks (a start for real CMA-ES).",
          {"episodes": 2}),
    Stage("evaluate", "evaluate", "Evaluate", EvaluateConfig, "core.api:evaluate",
          "Drive the controller on held-out real tracks.", {"episodes": 4}),
    Stage("divergence", "divergence", "Divergence", DivergenceConfig, "core.api:dream_divergence",
          "Dream open loop from held-out real states with the recorded actions; compare with reality.",
          {"max_episodes": 1}),
    Stage("iterate", "iterate", "Iterate", IterateConfig, "core.api:iterate",
          "Ha's iterative training: collect with C (+ noise), retrain M on old + new latents, retrain C in the "
          "new dream; repeat.", {"rounds": 1, "episodes": 4, "train_memory": {"epochs": 1},
                                 "train_controller": {"generations": 2}}),
    Stage("dream", "dream", "Dream video", DreamVideoConfig, "core.api:record_dream",
          "Dream from a real frame and write an MP4.", in_app=False),
    Stage("compare-vision", "compare", "Compare vision", CompareVisionConfig, "core.compare:compare_vision",
          "ConvVAE vs DDS+VAE on held-out frames (MSE, SSIM, FID, a PNG grid).", in_app=False),
    Stage("bench", "bench", "Benchmark", BenchConfig, "core.bench:bench",
          "Print throughput figures (env, VAE, MDN-RNN, dream, decode) of this machine.", in_app=False),
)  # fmt: skip
"""Every stage, in pipeline order."""


def stage(name: str) -> Stage:
    """The stage called ``name`` (CLI name or app key). Raises KeyError naming the known ones."""
    for s in STAGES:
        if name in (s.name, s.key):
            return s
    raise KeyError(f"no stage {name!r}; known: {', '.join(s.name for s in STAGES)}")


def app_stages() -> list[Stage]:
    """The stages the app's Training panel offers, in pipeline order."""
    return [s for s in STAGES if s.in_app]
