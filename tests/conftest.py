"""Shared fixtures: tiny real CarRacing episodes and tiny untrained checkpoints."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from core.models.mdnrnn import MDNRNN

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
# V's ONNX Runtime exports (core.vision_runtime) of the test models go to one folder per run, shared by the tests,
# the app processes they start and, in a parallel run (pytest -n), every worker; never into the user's cache
XDIST_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if XDIST_RUN:
    os.environ["XDG_CACHE_HOME"] = os.path.join(tempfile.gettempdir(), f"dream-explorer-test-cache-{XDIST_RUN}")
else:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dream-explorer-test-cache-")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
# the suite's torch threads: 2 (the machine's cores), 1 per worker in a parallel run, where the workers share them
torch.set_num_threads(1 if XDIST_RUN else 2)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test (the app's own setting), the suite's count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def real_episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three short real CarRacing-v3 episodes (random exploration policy, 60 steps each)."""
    from core.config import CollectConfig
    from core.data.collect import collect

    out = tmp_path_factory.mktemp("episodes")
    collect(CollectConfig(out_dir=out, episodes=3, max_steps=60, workers=2, seed=7))
    return out


@pytest.fixture(scope="session")
def tiny_world_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained ConvVAE, MDN-RNN and controller checkpoints (seeded)."""
    from core.checkpoint import save_checkpoint
    from core.models import MDNRNN, Controller, ControllerConfig, ConvVAE, MDNRNNConfig, VAEConfig

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("wm")
    vae, mdn, ctrl = ConvVAE(VAEConfig()), MDNRNN(MDNRNNConfig()), Controller(ControllerConfig())
    paths = {
        "vision": save_checkpoint(d / "vision.safetensors", vae, kind="conv_vae", config=vae.config),
        "memory": save_checkpoint(d / "memory.safetensors", mdn, kind="mdnrnn", config=mdn.config),
    }
    paths["controller"] = save_checkpoint(
        d / "controller.safetensors", ctrl, kind="controller", config=ctrl.config,
        extra={"vision": str(paths["vision"]), "memory": str(paths["memory"])},
    )  # fmt: skip
    return paths


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """For the explorer tests: untrained shipped-style world models (ConvVAE and DDS+VAE) in one assets dir,
    and two short synthetic episodes."""
    from explorer.tiny import make_episodes, make_untrained_assets

    root = tmp_path_factory.mktemp("explorer")
    make_untrained_assets(root / "assets", "conv_vae")
    make_untrained_assets(root / "assets", "dds_vae")
    make_episodes(root / "episodes", episodes=2, steps=24)
    return root


@pytest.fixture(scope="session")
def pipeline(real_episodes: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """V (2 epochs), the latents and M (2 epochs) trained on :func:`real_episodes`: the tiny real pipeline the stage
    and CLI tests read (they must not modify its files)."""
    from core.config import EncodeConfig, MemoryTrainConfig, VisionTrainConfig
    from core.progress import Progress
    from core.train.encode import train_encode
    from core.train.memory import train_memory
    from core.train.vision import train_vision

    d = tmp_path_factory.mktemp("run")
    reports: list[Progress] = []
    vcfg = VisionTrainConfig(data_dir=real_episodes, out=d / "v.safetensors", epochs=2, batch_size=32, seed=0)
    v = train_vision(vcfg, on_progress=reports.append)
    assert v.checkpoint == d / "v.safetensors" and not v.cancelled
    assert reports[-1].step == reports[-1].total and "vision/val/recon" in reports[-1].metrics
    train_encode(EncodeConfig(data_dir=real_episodes, vision=d / "v.safetensors", out=d / "lat.npz"))
    m = train_memory(
        MemoryTrainConfig(latents=d / "lat.npz", out=d / "m.safetensors", epochs=2, seq_len=16, batch_size=4)
    )
    assert m.checkpoint is not None
    return {"dir": d, "vision": d / "v.safetensors", "latents": d / "lat.npz", "memory": d / "m.safetensors"}


@pytest.fixture(scope="session")
def speed_memory(pipeline: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An M with a speed head (1 epoch) on :func:`pipeline`'s latents, which carry the HUD speeds."""
    from core.config import MemoryTrainConfig
    from core.train.memory import train_memory

    out = tmp_path_factory.mktemp("speed") / "m.safetensors"
    cfg = MemoryTrainConfig(latents=pipeline["latents"], out=out, epochs=1, seq_len=16, batch_size=4, speed_weight=1.0,
                            dream_check_steps=0)  # fmt: skip
    checkpoint = train_memory(cfg).checkpoint
    assert checkpoint is not None
    return checkpoint


@pytest.fixture(scope="session")
def speed_input_memory(pipeline: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An M that reads the car's speed (``speed_input``, 1 epoch) on :func:`pipeline`'s latents."""
    from core.config import MemoryTrainConfig
    from core.train.memory import train_memory

    out = tmp_path_factory.mktemp("speed_input") / "m.safetensors"
    cfg = MemoryTrainConfig(latents=pipeline["latents"], out=out, epochs=1, seq_len=16, batch_size=4, speed_weight=1.0,
                            speed_input=True, dream_check_steps=5)  # fmt: skip
    checkpoint = train_memory(cfg).checkpoint
    assert checkpoint is not None
    return checkpoint


def random_latents(path: Path, vision: Path, z_dim: int, episodes: int = 3, steps: int = 40) -> Path:
    """A latent file of ``episodes`` random ``steps``-step episodes (N(0, I) mu, uniform actions, reward -0.1),
    recorded as encoded by ``vision``."""
    import numpy as np

    from core.data.datasets import LatentEpisodes, file_sha256

    rng = np.random.default_rng(0)
    mu = rng.standard_normal((episodes * (steps + 1), z_dim)).astype(np.float32)
    return LatentEpisodes(
        mu=mu, logvar=np.zeros_like(mu), actions=rng.uniform(0, 1, (episodes * steps, 3)).astype(np.float32),
        rewards=np.full(episodes * steps, -0.1, np.float32), terminated=np.zeros(episodes * steps, np.float32),
        starts=np.arange(episodes + 1) * (steps + 1), seeds=np.arange(episodes), vision_kind="conv_vae",
        vision_sha256=file_sha256(vision),
    ).save(path)  # fmt: skip


def fit_mdnrnn(m: MDNRNN, batch: Callable[[int], dict[str, torch.Tensor]], steps: int, lr: float) -> dict[str, float]:
    """Adam on ``m.loss`` over ``batch(0)``..``batch(steps - 1)``; the last step's loss parts."""
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    parts: dict[str, float] = {}
    for i in range(steps):
        loss, parts = m.loss(batch(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return parts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Tiny untrained V and M checkpoints and a latent file of 3 random 40-step episodes (controller and iterate
    tests; :func:`tests.controller_world.make_world`)."""
    from tests.controller_world import make_world

    return make_world(tmp_path_factory.mktemp("world"))
