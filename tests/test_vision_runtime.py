"""V on ONNX Runtime (core.vision_runtime): the same numbers as PyTorch, exported once, PyTorch where it fails."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core.vision_runtime as vision_runtime
from core.api import load_vision, to_uint8_hwc
from core.models import DDSVAE
from core.vision_runtime import VisionRuntime
from explorer.input import DriveKeys
from explorer.session import Session, SessionConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _vision(data: Path, kind: str):  # noqa: ANN202
    name = "convvae" if kind == "conv_vae" else "ddsvae"
    return load_vision(data / "assets" / f"{name}_vision.safetensors")


@pytest.mark.parametrize("kind", ["conv_vae", "dds_vae"])
def test_onnx_runtime_gives_pytorchs_latents_masks_and_frames(data: Path, kind: str) -> None:
    vision = _vision(data, kind)
    runtime = VisionRuntime(vision)
    assert runtime.backend == "onnxruntime" and runtime.note == ""
    size = 96 if kind == "dds_vae" else 64
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    z = torch.randn(5, vision.config.z_dim, generator=torch.Generator().manual_seed(4))  # a batch the export never saw
    mu, logvar, selected = runtime.encode(x)
    frames = runtime.decode(z)
    with torch.inference_mode():
        ref_mu, ref_logvar = vision.encode(x)
        ref_frames = vision.decode(z)
    assert mu.shape == (1, vision.config.z_dim) and frames.shape == (5, 3, size, size)
    assert torch.allclose(mu, ref_mu, atol=1e-4) and torch.allclose(logvar, ref_logvar, atol=1e-4)
    assert np.abs(to_uint8_hwc(frames).astype(int) - to_uint8_hwc(ref_frames).astype(int)).max() <= 1
    if isinstance(vision, DDSVAE):
        assert selected is not None
        with torch.inference_mode():
            ref = vision.mask(x)
        assert float((selected.mask != ref.mask).float().mean()) < 0.001
        assert torch.allclose(selected.mini_mask, ref.mini_mask, atol=1e-4)
    else:
        assert selected is None


def test_the_export_is_kept_and_a_spoilt_one_is_made_again(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vision = _vision(data, "conv_vae")
    exports: list[Path] = []
    export = vision_runtime._export

    def counted(module: torch.nn.Module, arg: str, example: torch.Tensor, path: Path) -> None:
        exports.append(path)
        export(module, arg, example, path)

    monkeypatch.setattr(vision_runtime, "_export", counted)
    assert VisionRuntime(vision, cache_dir=tmp_path).backend == "onnxruntime"
    assert len(exports) == 2 and all(p.parent == tmp_path for p in exports)  # encode and decode
    assert VisionRuntime(vision, cache_dir=tmp_path).backend == "onnxruntime"
    assert len(exports) == 2  # the second start reads them
    exports[1].write_bytes(b"cut short")
    again = VisionRuntime(vision, cache_dir=tmp_path)
    assert again.backend == "onnxruntime" and exports[2:] == [exports[1]]  # made again, once
    vision.fc_decode.weight.data += 0.1  # other weights: another key, another export
    assert VisionRuntime(vision, cache_dir=tmp_path).backend == "onnxruntime" and len(exports) == 5


def test_without_onnxruntime_pytorch_runs_and_says_why(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    vision = _vision(data, "dds_vae")
    runtime = VisionRuntime(vision)
    assert runtime.backend == "pytorch" and runtime.note == "V runs on PyTorch: onnxruntime is not installed"
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        mu, _, selected = runtime.encode(x)
        ref_mu, _, ref = vision.encode_with_mask(x)
    assert torch.equal(mu, ref_mu) and selected is not None and torch.equal(selected.mask, ref.mask)
    with pytest.raises(ValueError, match="backend must be one of"):
        VisionRuntime(vision, "tensorrt")  # type: ignore[arg-type]


def test_a_check_that_fails_leaves_pytorch_running(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vision = _vision(data, "conv_vae")
    monkeypatch.setattr(vision_runtime, "TOLERANCE", -1.0)  # nothing can pass
    runtime = VisionRuntime(vision, cache_dir=tmp_path)
    assert runtime.backend == "pytorch" and "differs from PyTorch" in runtime.note


def test_the_app_session_shows_the_same_dream_on_either_runtime(data: Path) -> None:
    shown = {}
    for backend in ("onnxruntime", "pytorch"):
        s = Session(SessionConfig(assets=data / "assets", vision_kind="dds_vae", mode="split", futures=2, seed=3,
                                  vision_runtime=backend))  # type: ignore[arg-type]  # fmt: skip
        try:
            assert s.vision_runtime is not None and s.vision_runtime.backend == backend
            shown_as = "ONNX Runtime" if backend == "onnxruntime" else "PyTorch"
            assert s.model_notes["vision"].endswith(f"; runs on {shown_as}")  # the Models panel's line
            for _ in range(12):
                s.tick(DriveKeys(gas=True))
            shown[backend] = (s.real_z, s.dream_frame(), s.mask_views())
        finally:
            s.close()
    (z_a, frame_a, mask_a), (z_b, frame_b, mask_b) = shown["onnxruntime"], shown["pytorch"]
    assert z_a is not None and z_b is not None and np.allclose(z_a, z_b, atol=1e-4)
    assert frame_a is not None and frame_b is not None and np.abs(frame_a.astype(int) - frame_b.astype(int)).max() <= 1
    assert mask_a is not None and mask_b is not None and np.mean(mask_a.mask != mask_b.mask) < 0.001


def _timed(fp32_ms: float, bf16_ms: float):  # noqa: ANN202
    """A stand-in for the runtime's timer: the float32 decode is timed first, then the bfloat16 one."""
    times = iter([fp32_ms, bf16_ms])
    return lambda call, calls=1: (call(), next(times))[1]


def test_a_dds_vae_decodes_in_bfloat16_only_when_it_is_close_and_faster(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vision = _vision(data, "dds_vae")
    z = torch.randn(4, vision.config.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        ref = to_uint8_hwc(vision.decode(z)).astype(int)
    monkeypatch.setattr(vision_runtime, "cpu_ms", _timed(10.0, 8.0))
    runtime = VisionRuntime(vision, "pytorch", bf16_decode=True)
    assert runtime.decode_dtype == torch.bfloat16
    with torch.inference_mode():
        frames = runtime.decode(z)
    assert frames.dtype == torch.float32 and frames.shape == (4, 3, 96, 96)
    assert np.abs(to_uint8_hwc(frames).astype(int) - ref).max() <= 255 * vision_runtime.BF16_TOLERANCE
    assert not torch.equal(frames, vision.decode(z).detach())  # it really ran in bfloat16
    monkeypatch.setattr(vision_runtime, "cpu_ms", _timed(10.0, 12.0))  # slower here: float32 stays
    assert VisionRuntime(vision, "pytorch", bf16_decode=True).decode_dtype == torch.float32
    monkeypatch.setattr(vision_runtime, "cpu_ms", _timed(10.0, 8.0))
    monkeypatch.setattr(vision_runtime, "BF16_TOLERANCE", 0.0)  # the check fails: float32 stays
    assert VisionRuntime(vision, "pytorch", bf16_decode=True).decode_dtype == torch.float32
    assert VisionRuntime(vision, "pytorch").decode_dtype == torch.float32  # off unless asked for
    conv = _vision(data, "conv_vae")
    assert VisionRuntime(conv, "pytorch", bf16_decode=True).decode_dtype == torch.float32  # not a BF16_KINDS V


def test_the_app_session_decodes_in_bfloat16_when_asked_and_says_so(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vision_runtime, "cpu_ms", _timed(10.0, 8.0))
    s = Session(SessionConfig(assets=data / "assets", vision_kind="dds_vae", mode="split", futures=2, seed=3,
                              vision_runtime="pytorch", vision_bf16=True))  # fmt: skip
    try:
        assert s.vision_runtime is not None and s.vision_runtime.decode_dtype == torch.bfloat16
        assert s.model_notes["vision"].endswith("; runs on PyTorch, decodes in bfloat16")
        for _ in range(6):
            s.tick(DriveKeys(gas=True))
        assert s.dream_frame() is not None and s.road is not None  # the dream's picture and its road share
    finally:
        s.close()


@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_two_threads_give_one_threads_numbers_and_leave_torch_as_they_were(data: Path, backend: str) -> None:
    vision = _vision(data, "dds_vae")
    runtime = VisionRuntime(vision, backend, threads=2)  # type: ignore[arg-type]
    assert runtime.backend == backend and not runtime.wide  # one thread until the caller says otherwise
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(6))
    z = torch.randn(3, vision.config.z_dim, generator=torch.Generator().manual_seed(7))
    seen: list[int] = []
    if backend == "pytorch":  # the thread count each PyTorch call runs on
        decode = vision.decode
        vision.decode = lambda z: (seen.append(torch.get_num_threads()), decode(z))[1]  # type: ignore[method-assign]
    out = {}
    with torch.inference_mode():
        for wide in (False, True):
            runtime.wide = wide
            mu, _, selected = runtime.encode(x)
            out[wide] = (mu, runtime.decode(z), selected)
    assert torch.allclose(out[False][0], out[True][0], atol=1e-5)
    assert torch.allclose(out[False][1], out[True][1], atol=1e-5)
    assert out[False][2] is not None and out[True][2] is not None
    assert torch.equal(out[False][2].mask, out[True][2].mask)
    assert torch.get_num_threads() == 1  # the fixture's count, restored after every wide call
    if backend == "pytorch":
        assert seen == [1, 1]  # PyTorch calls stay on the calling thread
    else:
        assert len(runtime.choice._started) == 2  # the wide encode and decode ran on ONNX Runtime's 2 threads


@pytest.mark.parametrize(("mode", "free", "wide"), [("dream", True, True), ("real", True, True),
                                                    ("split", True, False), ("dream", False, False)])  # fmt: skip
def test_the_app_runs_v_on_two_threads_only_when_nothing_else_computes(
    data: Path, mode: str, free: bool, wide: bool
) -> None:
    s = Session(SessionConfig(assets=data / "assets", vision_kind="dds_vae", mode=mode, seed=3))  # type: ignore[arg-type]
    try:
        runtime = s.vision_runtime
        assert runtime is not None and runtime.threads == min(2, os.cpu_count() or 1)
        calls: list[bool] = []
        encode, decode = runtime.encode, runtime.decode
        runtime.encode = lambda x: (calls.append(runtime.wide), encode(x))[1]  # type: ignore[method-assign]
        runtime.decode = lambda z: (calls.append(runtime.wide), decode(z))[1]  # type: ignore[method-assign]
        s.second_core_free = free
        for _ in range(4):
            s.tick(DriveKeys(gas=True))
            s.dream_frames()
            s._cache.pop("recon", None)  # the Vision panel's reconstruction, decoded now
            s.reconstruction()
        assert calls and all(c == (wide and runtime.threads > 1) for c in calls)
    finally:
        s.close()


def test_the_thread_choice_follows_the_faster_count_and_re_times_the_other() -> None:
    choice = vision_runtime.ThreadChoice(2)
    kind = ("decode", 1)
    cost = {2: 0.005, 1: 0.008}  # wide is faster at first
    used = []
    for _ in range(2 * vision_runtime.PROBE_EVERY - 10):  # one re-timing in the first run, two in the second
        n, probe = choice.pick(kind)
        used.append(n)
        choice.record(kind, n, cost[n], probe)
    assert used[:4] == [2, 2, 1, 1]  # each count started (not timed) and timed, wide first
    probes = vision_runtime.PROBE_CALLS
    assert used.count(1) == 2 + probes  # then wide, but for the re-timing calls
    cost[2] = 0.110  # another process takes the second core: two threads spin-wait
    used.clear()
    for _ in range(2 * vision_runtime.PROBE_EVERY - 10):  # one re-timing in the first run, two in the second
        n, probe = choice.pick(kind)
        used.append(n)
        choice.record(kind, n, cost[n], probe)
    assert used.count(2) == 1 + 2 * probes  # one slow call, then only the re-timing calls
    assert choice.pick(("encode", 1)) == (2, False)  # another kind keeps its own times
