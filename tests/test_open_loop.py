"""The MDN-RNN's open-loop (dream) loss: index alignment, and that training on it makes dreams hold reality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.config import MemoryTrainConfig
from core.errors import ConfigError
from core.models.mdn import LOG_SIGMA_MIN
from core.models.mdnrnn import MDNRNN, MDNRNNConfig
from core.models.open_loop import open_loop_loss


def _ar_batch(seed: int, batch: int = 16, steps: int = 30) -> dict[str, torch.Tensor]:
    """A car-like latent: z_0 integrates the steering with noise, z_1 integrates z_0; reward = z_1."""
    g = torch.Generator().manual_seed(seed)
    action = torch.rand(batch, steps, 3, generator=g) * 2 - 1
    z = torch.zeros(batch, steps + 1, 2)
    for t in range(steps):
        z[:, t + 1, 0] = 0.9 * z[:, t, 0] + 0.3 * action[:, t, 0] + 0.05 * torch.randn(batch, generator=g)
        z[:, t + 1, 1] = 0.9 * z[:, t, 1] + 0.3 * z[:, t, 0] + 0.05 * torch.randn(batch, generator=g)
    return {"z": z, "action": action, "reward": z[:, 1:, 1].clone(), "done": torch.zeros(batch, steps)}


def test_open_loop_loss_scores_the_steps_after_the_real_prefix() -> None:
    """A model that copies z_t with a tiny sigma and predicts reward 0: its dream equals reality on constant z,
    so the open-loop reward MSE must be exactly the mean of r^2 over the dreamed steps start+1..start+steps."""
    m = MDNRNN(MDNRNNConfig(z_dim=3, hidden_dim=8, n_gaussians=2))
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.zero_()
        m.head.bias[2 * m.n_mdn : 3 * m.n_mdn] = LOG_SIGMA_MIN
        m.head.bias[-1] = -20.0
    steps_total = 12
    reward = torch.arange(steps_total, dtype=torch.float32).repeat(2, 1) / 10
    batch = {
        "z": torch.ones(2, steps_total + 1, 3) * 0.5,
        "action": torch.zeros(2, steps_total, 3),
        "reward": reward,
        "done": torch.zeros(2, steps_total),
    }
    start, steps = 3, 5
    _, parts = open_loop_loss(m, batch, start, steps)
    expected = reward[:, start + 1 : start + steps + 1].pow(2).mean().item()
    assert parts["open_loop_reward_mse"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        open_loop_loss(m, batch, 8, 5)


@pytest.fixture
def one_thread():
    """Tiny models run ~30x faster on one thread (per-op overhead); restore the suite's setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_on_dreams_makes_long_dreams_hold_reality(one_thread: None) -> None:
    """Same model, same data, same steps: adding the open-loop loss must cut the NLL of reality under a
    25-step dream by a wide margin (measured here: 5.8 nats per dimension -> 0.6)."""

    def trained(open_loop: bool) -> MDNRNN:
        torch.manual_seed(0)
        m = MDNRNN(MDNRNNConfig(z_dim=2, hidden_dim=16, n_gaussians=2))
        opt = torch.optim.Adam(m.parameters(), 1e-2)
        for i in range(60):
            b = _ar_batch(i, batch=16, steps=24)
            loss = m.loss(b)[0]
            if open_loop:
                loss = loss + open_loop_loss(m, b, 2, 15, torch.Generator().manual_seed(i))[0]
            opt.zero_grad()
            loss.backward()
            opt.step()
        return m

    held_out = _ar_batch(10_000, batch=32, steps=30)

    def dream_nll(m: MDNRNN) -> float:
        with torch.no_grad():
            return (
                sum(
                    open_loop_loss(m, held_out, 2, 25, torch.Generator().manual_seed(s))[1]["open_loop_nll"]
                    for s in range(3)
                )
                / 3
            )

    teacher_only, with_dreams = dream_nll(trained(False)), dream_nll(trained(True))
    assert with_dreams < teacher_only - 1.0, (teacher_only, with_dreams)


def test_open_loop_config_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="open-loop-steps"):
        MemoryTrainConfig(seq_len=16, open_loop_steps=16)
    with pytest.raises(ConfigError, match="open-loop-weight"):
        MemoryTrainConfig(open_loop_steps=4, open_loop_weight=float("nan"))
    with pytest.raises(ConfigError, match="not both"):
        MemoryTrainConfig(resume=True, init_from=tmp_path / "m.safetensors")
