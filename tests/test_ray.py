"""Scale-out on Ray: collect, real-env fitness and evaluate with ``executor="ray"`` against a local Ray instance.

Needs the ``ray`` extra (``make test`` installs ``.[dev,ray]``). One Ray instance serves the whole module.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.checkpoint import load_model, save_checkpoint
from core.config import CollectConfig
from core.data.collect import collect
from core.data.episodes import read_episode
from core.evaluate import EvaluateConfig, evaluate
from core.models.controller import Controller, ControllerConfig
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.vae import ConvVAE, VAEConfig
from core.parallel import TaskFailed, make_executor
from core.train.controller import ControllerTrainConfig, train_controller

# one local Ray instance at a time: run in parallel (pytest -n), this module and the loopback test in test_faults.py
# share one worker
pytestmark = pytest.mark.xdist_group("ray")

ray = pytest.importorskip("ray")

Z, H = 8, 16


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    d = tmp_path_factory.mktemp("ray-world")
    torch.manual_seed(0)
    vision, memory, controller = d / "vision.safetensors", d / "memory.safetensors", d / "controller.safetensors"
    save_checkpoint(vision, ConvVAE(VAEConfig(z_dim=Z)), kind="conv_vae", config=VAEConfig(z_dim=Z))
    m = MDNRNN(MDNRNNConfig(z_dim=Z, hidden_dim=H, n_gaussians=2))
    save_checkpoint(memory, m, kind="mdnrnn", config=m.config)
    c = Controller(ControllerConfig(Z, H))
    save_checkpoint(controller, c, kind="controller", config=c.config,
                    extra={"vision": str(vision), "memory": str(memory)})  # fmt: skip
    return SimpleNamespace(vision=vision, memory=memory, controller=controller)


def test_ray_executor_maps_and_reports_task_errors() -> None:
    # task functions must be importable on the workers: stdlib ones here, core's in the stages
    with make_executor("ray", 2, 12) as executor:
        assert sorted(executor.map_unordered(operator.floordiv, [1, 2, 3])) == [(0, 12), (1, 6), (2, 4)]
        with pytest.raises(TaskFailed, match="floordiv .* ZeroDivisionError"):
            list(executor.map_unordered(operator.floordiv, [0]))
    assert ray.is_initialized()  # the executor joined the test's instance and leaves it running


def test_collect_on_ray_writes_episodes_on_the_driver(tmp_path: Path) -> None:
    config = CollectConfig(out_dir=tmp_path, episodes=2, seed=7, max_steps=20, executor="ray")
    summaries = collect(config)
    assert [s.seed for s in summaries] == [7, 8]
    for s in summaries:
        episode = read_episode(s.path)
        assert episode.steps == 20 and episode.seed == s.seed


def test_evaluate_on_ray_matches_the_local_pool(world: SimpleNamespace) -> None:
    config = EvaluateConfig(controller=world.controller, episodes=2, max_steps=25)
    on_ray = evaluate(EvaluateConfig(**{**config.__dict__, "executor": "ray"}))
    local = evaluate(config)
    assert on_ray.seeds == local.seeds and on_ray.returns == pytest.approx(local.returns)


def test_real_fitness_on_ray(world: SimpleNamespace, tmp_path: Path) -> None:
    config = ControllerTrainConfig(
        vision=world.vision, memory=world.memory, latents=None, out=tmp_path / "c.safetensors", evaluator="real",
        population=4, rollouts=1, generations=1, max_steps=15, real_check_every=1, real_check_episodes=1,
        executor="ray",
    )  # fmt: skip
    result = train_controller(config)
    assert "controller/real_return" in result.history[0][1]
    assert load_model(result.checkpoint, "controller").checkpoint_metrics["controller/real_return"] == (  # type: ignore[attr-defined]
        pytest.approx(result.metrics["controller/real_return"])
    )
