"""DDS+VAE: size, the DDS mask and gate, the two training phases, shapes and determinism."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_model, save_checkpoint
from core.errors import ConfigError
from core.models.dds_vae import DDSVAE, DDSVAEConfig

K = 829  # int(0.03 * 3 * 96 * 96)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Batches of 2 gain nothing from a second thread, and 2 threads on a busy 2-core machine spin-wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def frames() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(2, 3, 96, 96)


def _model(**config: float) -> DDSVAE:
    torch.manual_seed(0)
    return DDSVAE(DDSVAEConfig(**config))


def test_parameter_count_matches_the_seed() -> None:
    n = sum(p.numel() for p in DDSVAE().parameters())
    assert n == 4_039_089
    assert DDSVAEConfig().keep_count == K


def test_eval_mask_keeps_exactly_k_values(frames: torch.Tensor) -> None:
    model = _model().eval()
    with torch.no_grad():
        out = model.mask(frames)
    assert out.mask.shape == out.gated.shape == (2, 3, 96, 96)
    assert out.mini_mask.shape == (2, 4, 16, 16)
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}
    assert out.mask.flatten(1).sum(1).tolist() == [K] * 2
    assert bool((out.gated[out.mask == 0] == 0).all())
    assert bool((out.gated <= frames).all()) and bool((out.gated >= 0).all())


def test_training_mask_keeps_k_values_without_exploration(frames: torch.Tensor) -> None:
    model = _model(explore_prob=0.0).train()
    with torch.no_grad():
        out = model.mask(frames)
    assert out.mask.flatten(1).sum(1).tolist() == [K] * 2


def test_all_ones_exploration_mask_only_in_training(frames: torch.Tensor) -> None:
    model = _model(explore_prob=1.0)
    with torch.no_grad():
        assert bool((model.train().mask(frames).mask == 1).all())
        assert model.eval().mask(frames).mask.flatten(1).sum(1).tolist() == [K] * 2


def test_gradients_reach_unet1_through_the_gate(frames: torch.Tensor) -> None:
    model = _model(explore_prob=0.0).train()
    loss, metrics = model.loss(frames)
    loss.backward()
    assert set(metrics) == {"recon", "l1"}
    for name, p in model.unet1.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert all(p.grad is None for p in model.mini_vae.parameters())  # bypassed in phase 1


def test_phase2_trains_only_the_mini_vae_and_keeps_the_rest_bit_identical(frames: torch.Tensor) -> None:
    model = _model()
    model.set_phase(2)
    model.train()  # the frozen parts must stay in eval mode anyway
    assert not model.unet1.training and not model.downscaling.training and not model.unet2.training
    assert model.mini_vae.training

    frozen = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("mini_vae.")}
    mini_before = {k: v.clone() for k, v in model.mini_vae.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        loss, metrics = model.loss(frames)
        loss.backward()
        optimizer.step()
    assert set(metrics) == {"perceptual", "kl", "recon"}

    after = model.state_dict()
    assert {"unet1.stem.1.running_var", "unet2.stem.1.num_batches_tracked"} <= set(frozen)
    for k, v in frozen.items():
        assert torch.equal(v, after[k]), k
    assert any(not torch.equal(v, model.mini_vae.state_dict()[k]) for k, v in mini_before.items())
    assert all(not p.requires_grad for n, p in model.named_parameters() if not n.startswith("mini_vae."))


def test_set_phase2_reinitialises_the_mini_vae_and_resumes_via_load_state_dict(frames: torch.Tensor) -> None:
    model = _model()
    before = model.mini_vae.fc_mu.weight.clone()
    model.set_phase(2)
    assert not torch.equal(before, model.mini_vae.fc_mu.weight)

    resumed = _model()
    resumed.set_phase(2)  # before load_state_dict, as the trainer does
    resumed.load_state_dict(model.state_dict())
    model.eval()
    resumed.eval()
    with torch.no_grad():
        assert torch.equal(model.encode(frames)[0], resumed.encode(frames)[0])

    with pytest.raises(ConfigError):
        model.set_phase(3)


def test_shapes_and_ranges_of_encode_decode_forward(frames: torch.Tensor) -> None:
    model = _model().eval()
    with torch.no_grad():
        mu, logvar = model.encode(frames)
        assert mu.shape == logvar.shape == (2, 32)
        recon = model.decode(mu)
        assert recon.shape == (2, 3, 96, 96) and recon.dtype == torch.float32
        assert bool((recon >= 0).all() and (recon <= 1).all())
        recon1, mu1, logvar1 = model(frames)  # phase 1: mini-VAE bypassed, zero placeholders
        assert recon1.shape == (2, 3, 96, 96) and mu1.shape == logvar1.shape == (2, 32)
        model.set_phase(2)
        recon2, mu2, _ = model(frames)
        assert recon2.shape == (2, 3, 96, 96) and mu2.shape == (2, 32)
        mu3, _, selected = model.encode_with_mask(frames)
        assert torch.equal(mu3, mu2) and torch.equal(selected.mini_mask, model.mask(frames).mini_mask)
    assert (model.kind, model.input_size, model.z_dim, model.phase) == ("dds_vae", 96, 32, 2)


def test_eval_is_deterministic(frames: torch.Tensor) -> None:
    model = _model().eval()
    with torch.no_grad():
        a, b = model.mask(frames), model.mask(frames)
        assert torch.equal(a.mask, b.mask) and torch.equal(a.gated, b.gated)
        assert torch.equal(model.encode(frames)[0], model.encode(frames)[0])


@pytest.mark.parametrize(
    "field, value",
    [("z_dim", 0), ("keep_fraction", 0.0), ("keep_fraction", 1.5), ("gate_temperature", 0.0),
     ("explore_prob", 1.1), ("free_bits", -1.0), ("gate_alpha", -1.0), ("temporal_weight", -0.1)],
)  # fmt: skip
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError):
        DDSVAEConfig(**{field: value})


def test_batchnorm_recalibration_matches_the_evaluation_data_flow() -> None:
    model = _model()
    torch.manual_seed(1)
    x = torch.rand(8, 3, 96, 96)
    with torch.no_grad():
        model.train()
        for _ in range(3):  # training-mode passes (noisy gates, exploration masks) set the running statistics
            model(torch.rand(8, 3, 96, 96))
        model.eval()
        before = model(x)[0]
        probe = copy.deepcopy(model)
        for bn in probe.modules():  # reference: evaluation-mode gates, BatchNorm on this batch's own statistics
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.train()
        reference = probe(x)[0]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with pytest.raises(ValueError, match="at least one batch"):
        model.recalibrate_batchnorm([])
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], before)  # an empty call leaves the statistics alone
    assert model.recalibrate_batchnorm([x[:4], x[4:]]) == 8
    assert not model.training and all(bn.momentum == 0.1 for bn in norms)
    with torch.no_grad():
        after = model(x)[0]
    # population statistics over the same 8 frames: close to the batch-statistics output, unlike before
    assert (after - reference).abs().max() < 0.2 * (before - reference).abs().max()


def test_frozen_noise_evaluation_gates_are_one_fixed_draw_of_the_training_noise() -> None:
    torch.manual_seed(2)
    x = torch.rand(1, 3, 96, 96).expand(3, -1, -1, -1).contiguous()  # the same frame three times
    scores = torch.zeros(3, 3, 96, 96)  # flat scores: the noise alone decides which values are kept
    det = _model().dds.eval()
    frozen = _model(eval_gates="frozen-noise", eval_noise_seed=7).dds.eval()
    with torch.no_grad():
        mask_d, _ = det(scores)
        mask_f, gate_f = frozen(scores)
        again, _ = _model(eval_gates="frozen-noise", eval_noise_seed=7).dds.eval()(scores)
        other, _ = _model(eval_gates="frozen-noise", eval_noise_seed=8).dds.eval()(scores)
    assert mask_f.flatten(1).sum(1).tolist() == [K] * 3  # exactly k, no exploration in evaluation
    assert torch.equal(mask_f[0], mask_f[1]) and torch.equal(mask_f, again)  # fixed per seed, same every frame
    assert not torch.equal(mask_f, other)
    # deterministic top-k of flat scores keeps the first k flat indices (one blob at the top of the frame);
    # a noise draw scatters them: rows kept in channel 0
    rows = lambda m: m[0, 0].sum(1).nonzero().numel()  # noqa: E731
    assert rows(mask_d) <= 9 and rows(mask_f) >= 60
    # the gate is the training gate with that one draw: sigmoid((logit(U) + u) / T) for every kept value
    model = _model(eval_gates="frozen-noise", eval_noise_seed=7).eval()
    assert model.dds.frozen_noise is not None and "dds.frozen_noise" not in model.state_dict()
    expected = torch.sigmoid((model.dds.frozen_noise + 1.0) / (2 / 3)).view(1, 3, 96, 96)
    torch.testing.assert_close(gate_f, expected.expand(3, -1, -1, -1))
    with torch.no_grad():
        out = model.mask(x)
    assert torch.equal(out.mask[0], out.mask[2])


def test_set_eval_gates_switches_the_evaluation_mask_and_records_it_in_the_config(frames: torch.Tensor) -> None:
    model = _model().eval()
    with torch.no_grad():
        before = model.mask(frames).mask
        model.set_eval_gates("frozen-noise", seed=3)
        after = model.mask(frames).mask
    assert (model.config.eval_gates, model.config.eval_noise_seed) == ("frozen-noise", 3)
    assert not model.training and not torch.equal(before, after)
    assert after.flatten(1).sum(1).tolist() == [K] * 2
    with pytest.raises(ConfigError, match="eval_gates"):
        model.set_eval_gates("median")
    with pytest.raises(ConfigError, match="eval_gates"):
        DDSVAEConfig(eval_gates="noisy")


def test_mask_input_lets_a_kept_black_value_differ_from_a_dropped_one(tmp_path: Path) -> None:
    """With the seed's encoder a black frame (the void beyond the map) gives the gates no gradient and the same
    code whatever the mask; with ``mask_input`` the encoder sees where the DDS looked."""
    black = torch.zeros(2, 3, 96, 96)
    seed_model, model = _model(explore_prob=0.0).train(), _model(explore_prob=0.0, mask_input=True).train()
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in seed_model.parameters())
    assert extra == 3 * 16 * 3 * 3  # three more input channels on the first 3x3 conv (no bias)
    for m, reaches in ((seed_model, False), (model, True)):
        m.mask(black).mini_mask.sum().backward()
        grads = [p.grad for p in m.unet1.parameters()]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) == reaches
    model.eval()
    with torch.no_grad():
        before = model.mask(black).mini_mask
        model.set_eval_gates("frozen-noise", seed=1)  # other kept positions, same (black) values
        after = model.mask(black).mini_mask
    assert not torch.allclose(before, after)
    path = save_checkpoint(tmp_path / "v.safetensors", model, kind="dds_vae", config=model.config)
    loaded = load_model(path, "dds_vae").eval()
    assert loaded.config.mask_input
    with torch.no_grad():
        assert torch.equal(loaded.mask(black).mini_mask, after)


def test_load_vision_gives_channels_last_weights_and_the_same_latents(tmp_path: Path, frames: torch.Tensor) -> None:
    from core.envs.world_model import load_vision

    model = _model().eval()
    path = save_checkpoint(tmp_path / "v.safetensors", model, kind="dds_vae", config=model.config)
    loaded = load_vision(path)
    conv = next(m for m in loaded.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    with torch.no_grad():
        mu_ref, _ = model.encode(frames)
        mu, _ = loaded.encode(frames)
        torch.testing.assert_close(mu, mu_ref, rtol=0, atol=1e-4)
        torch.testing.assert_close(loaded.decode(mu_ref), model.decode(mu_ref), rtol=0, atol=1e-4)
    again = save_checkpoint(tmp_path / "v2.safetensors", loaded, kind="dds_vae", config=loaded.config)
    assert load_model(again, "dds_vae") is not None  # channels-last weights save as ordinary tensors


def test_slowness_is_one_minus_the_lag_autocorrelation_and_ignores_the_scale() -> None:
    from core.models.vae import slowness

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4000, 8, generator=g)
    assert slowness(mu, mu).item() == 0.0  # a z that does not move
    assert slowness(mu, torch.randn(4000, 8, generator=g)).item() == pytest.approx(1.0, abs=0.05)  # unrelated
    rho = 0.8  # AR(1) pairs: corr(mu, later) = rho, unit variance both
    later = rho * mu + (1 - rho**2) ** 0.5 * torch.randn(4000, 8, generator=g)
    assert slowness(mu, later).item() == pytest.approx(1 - rho, abs=0.03)
    assert slowness(10 * mu, 10 * later).item() == pytest.approx(slowness(mu, later).item(), rel=1e-5)


def test_phase2_temporal_term_adds_the_weighted_slowness_of_the_pairs(frames: torch.Tensor) -> None:
    model = _model(temporal_weight=0.5)
    with pytest.raises(ConfigError, match="phase 2"):
        model.loss(frames, frames)
    model.set_phase(2)
    model.eval()  # z = mu: the loss is deterministic
    base, _ = model.loss(torch.cat([frames, frames.flip(0)]))
    paired, metrics = model.loss(frames, frames.flip(0))
    assert metrics["slowness"] > 0
    assert paired.item() == pytest.approx(base.item() + 0.5 * metrics["slowness"], rel=1e-5)
    assert model.loss(frames, frames)[1]["slowness"] == 0.0  # the same frames later: z did not move
