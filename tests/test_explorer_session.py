"""The explorer's Session (models, real env, dream, driver, recording), without a window."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from core.api import (
    CheckpointError,
    ConfigError,
    read_episode,
    road_share,
    to_uint8_hwc,
)
from explorer.input import DriveKeys
from explorer.recording import dream_to_episode_frame
from explorer.session import (
    HISTORY,
    LOST_ROAD_STEPS,
    MISSING,
    ZOOM_STEPS,
    RingBuffer,
    RoadShares,
    Session,
    SessionConfig,
)
from explorer.tiny import make_untrained_assets

GAS = DriveKeys(gas=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def session(data: Path) -> Iterator[Session]:
    s = Session(
        SessionConfig(
            vision_runtime="pytorch", assets=data / "assets", mode="split", futures=3, data_dir=data / "episodes"
        )
    )
    yield s
    s.close()


def test_opens_without_models_and_drives_the_real_car(tmp_path: Path) -> None:
    s = Session(SessionConfig(vision_runtime="pytorch", assets=tmp_path, mode="dream"))
    try:
        assert s.mode == "real" and not s.can_dream and s.world_model is None
        assert s.model_notes == MISSING
        assert "Training panel" in s.model_notes["vision"] and "make assets" in s.model_notes["vision"]
        for _ in range(30):
            s.tick(GAS)
        assert s.real_tally.step == 30 and s.speed > 1.0
        assert s.reconstruction() is None and s.mask_views() is None and s.dream_frame() is None
        s.set_mode("dream")
        assert s.mode == "real"
    finally:
        s.close()


def test_a_corrupt_checkpoint_is_reported_not_fatal(data: Path, tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    make_untrained_assets(assets)
    (assets / "convvae_memory.safetensors").write_bytes(b"not a checkpoint")
    s = Session(SessionConfig(vision_runtime="pytorch", assets=assets, mode="split"))
    try:
        assert s.vision is not None and s.memory is None and s.mode == "real"
        assert s.model_notes["memory"].startswith("cannot load memory")
    finally:
        s.close()


def test_split_mode_steps_reality_and_dream_with_the_same_action(session: Session) -> None:
    real_before, dream_before = session.real_frame.copy(), session.dream_frame().copy()  # type: ignore[union-attr]
    for _ in range(20):
        session.tick(GAS)
    assert session.real_tally.step == 20 and session.dream_tally.step == 20
    assert session.action[1] > 0.9
    assert np.abs(session.real_frame.astype(int) - real_before).mean() > 0
    assert np.abs(session.dream_frame().astype(int) - dream_before).mean() > 0  # type: ignore[union-attr]
    assert len(session.history["div_latent"].values()) == 20 and session.history["div_pixel"].last > 0


def test_split_mode_measures_the_road_of_reality_and_the_dream(session: Session) -> None:
    road = session.road
    assert road is not None and road.dream_steps == 0 and road.lost_steps == 0
    assert road.real is not None and road.real > 0.1  # the car starts on the road
    previous = road
    for step in range(1, 16):
        session.tick(GAS)
        road = session.road
        assert road is not None and road.dream_steps == step and road.real is not None and road.tracks is not None
        for share in (road.real, road.dream):
            assert math.isfinite(share) and 0.0 <= share <= 1.0
        # reality still shows road, so the count of steps off it grows while the dream does not track it
        assert road.lost_steps == (0 if road.tracks else previous.lost_steps + 1)
        previous = road
    assert road.real > 0.1  # V's input, measured the way V sees it
    expected = road_share(session.world_model.preprocess(session.real_frame))  # type: ignore[union-attr]
    assert road.real == pytest.approx(float(expected[0]))
    assert session.history["road_real"].last == road.real and session.history["road_dream"].last == road.dream
    assert len(session.history["road_real"].values()) == len(session.history["road_dream"].values()) == 15
    session.start_dream("real")  # G: a new dream from reality counts afresh
    assert session.road is not None and session.road.dream_steps == 0 and session.road.lost_steps == 0
    assert RoadShares(0.0, 0.3, False, 40, LOST_ROAD_STEPS + 1).lost and not RoadShares(0.0, 0.3, False, 40, 1).lost


def test_road_share_is_the_dreams_alone_in_dream_mode_and_absent_in_real_mode(session: Session) -> None:
    session.set_mode("dream")
    road = session.road
    assert road is not None and road.real is None and road.tracks is None and 0.0 <= road.dream <= 1.0
    session.tick(GAS)
    road = session.road
    assert road is not None and road.real is None and road.tracks is None and road.lost_steps == 0
    assert math.isfinite(road.dream) and 0.0 <= road.dream <= 1.0 and road.dream_steps == 1
    assert len(session.history["road_real"].values()) == 0  # the plot of reality vs dream is for split mode
    session.set_mode("real")
    session.tick(GAS)
    assert session.road is None


def test_horizon_restarts_the_dream_from_reality(session: Session) -> None:
    session.horizon = 5
    episode = session.dream_tally.episode
    for _ in range(6):
        session.tick(GAS)
    assert session.dream_tally.episode == episode + 1 and session.dream_tally.step == 1


def test_pause_and_single_step(session: Session) -> None:
    session.paused = True
    assert not session.tick(GAS)
    session.request_step()
    assert session.tick(GAS) and not session.tick(GAS)
    assert session.real_tally.step == 1


def test_tau_acts_on_the_next_step_and_widens_the_spread(session: Session) -> None:
    session.set_mode("dream")
    spreads = {}
    for tau in (0.05, 2.0):
        session.tau = tau
        assert session.dream is not None and session.dream.tau == tau
        session.start_dream("random")
        spreads[tau] = (session.next_step_spread(), None)
        session.step()
        spreads[tau] = (spreads[tau][0], session.dream_spread())
    assert spreads[2.0][0] > 2 * spreads[0.05][0] > 0
    assert spreads[2.0][1] > 2 * spreads[0.05][1] > 0
    session.tau = 9.0
    assert session.tau == 2.0


def test_tau_zero_is_the_deterministic_dream(data: Path) -> None:
    """tau 0, the slider's left end, is the MDN's mode: two sessions with different seeds (different noise streams
    for the dream) dream the same latents from the same z and actions, and futures batched from one state do not
    part. At the smallest tau above 0 the same two sessions part (so the comparison can tell)."""
    z0 = np.linspace(-1.0, 1.0, 32, dtype=np.float32)

    def dream_latents(seed: int, tau: float) -> np.ndarray:
        s = Session(
            SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="dream", futures=3, seed=seed, tau=tau)
        )
        try:
            assert s.tau == tau
            s.start_dream(z=z0)
            latents = []
            for _ in range(20):
                s.tick(GAS)
                latents.append(s.dream.z.numpy().copy())  # type: ignore[union-attr]
            assert s.dream_tally.step == 20
            if tau == 0:
                assert s.dream_spread() == 0.0 and s.next_step_spread() == 0.0
            return np.stack(latents)
        finally:
            s.close()

    a, b = dream_latents(1, 0.0), dream_latents(2, 0.0)
    assert np.array_equal(a, b)
    assert np.array_equal(a[:, 0], a[:, 1]) and np.array_equal(a[:, 0], a[:, 2])
    assert np.abs(a[-1, 0] - a[0, 0]).max() > 1e-3  # the dream moves, it is not stuck
    low_a, low_b = dream_latents(1, 0.01), dream_latents(2, 0.01)
    assert not np.allclose(low_a, low_b, atol=1e-3)


def test_dream_sources_and_futures(session: Session) -> None:
    session.start_dream("dataset")
    assert session.dataset_frame is not None and session.dataset_frame.shape == (96, 96, 3)
    session.futures = 5
    assert session.dream is not None and session.dream.n == 5
    session.decode_all_futures = True
    frames = session.dream_frames()
    assert frames is not None and frames.shape == (5, 64, 64, 3)
    assert session.dream_spread() == 0.0  # all futures start from the same z
    session.data_dir = Path("/nonexistent")
    session.start_dream("dataset")  # falls back to the real frame
    assert session.dream is not None


def test_autopilot_drives_and_any_key_takes_over(session: Session) -> None:
    session.set_driver("autopilot")
    session.tick(DriveKeys())
    assert session.driver == "autopilot" and session.action.shape == (3,)
    session.set_mode("dream")
    session.tick(DriveKeys())
    assert session.driver == "autopilot"
    session.tick(DriveKeys(right=True))
    assert session.driver == "human" and session.action[0] > 0


def test_latent_editing_decodes_the_edited_z(session: Session) -> None:
    assert session.edited_frame() is None
    session.edit_latent(3, 2.5)
    assert session.z_edit is not None and session.z_edit[3] == 2.5
    frame = session.edited_frame()
    assert frame is not None and frame.shape == (64, 64, 3)
    session.start_dream(z=session.z_edit)
    assert np.allclose(session.dream_z, session.z_edit)  # type: ignore[arg-type]
    session.stop_editing()
    assert session.z_edit is None


def test_reconstruction_and_error_map(session: Session) -> None:
    recon = session.reconstruction()
    assert recon is not None and recon.output.shape == recon.error.shape == (64, 64, 3)
    assert 0 < recon.mse < 1
    assert session.reconstruction() is recon  # cached until the next step
    assert session.mask_views() is None  # a ConvVAE has no mask
    assert session.dds_eval_gates is None
    with pytest.raises(ConfigError, match="DDS"):
        session.set_dds_eval_gates("frozen-noise")


def test_dds_vae_mask_views(data: Path) -> None:
    s = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", vision_kind="dds_vae", mode="real"))
    try:
        views = s.mask_views()
        assert s.has_mask and views is not None
        assert views.kept == pytest.approx(0.03, abs=0.001)
        assert views.mask.shape == (96, 96, 3) and set(np.unique(views.mask)) <= {0, 255}
        assert views.gated.shape == (96, 96, 3) and views.mini_mask.shape == (32, 32, 3)
        # switching the evaluation gates re-encodes the frame: another mask of the same size, another z
        own, z = s.dds_eval_gates, s._real_z.clone()  # type: ignore[union-attr]
        other = "frozen-noise" if own == "deterministic" else "deterministic"
        s.set_dds_eval_gates(other)
        switched = s.mask_views()
        assert s.dds_eval_gates == other and switched is not None and switched.kept == views.kept
        assert not np.array_equal(switched.mask, views.mask) and not torch.equal(s._real_z, z)
        s.set_dds_eval_gates(own)  # type: ignore[arg-type]
        assert torch.equal(s._real_z, z)
        with pytest.raises(ConfigError, match="eval_gates"):
            s.set_dds_eval_gates("median")
        assert s.dds_eval_gates == own
    finally:
        s.close()


def test_load_checkpoint_by_kind_and_use_shipped(session: Session, data: Path) -> None:
    runtime = session.vision_runtime
    message = session.load_checkpoint(data / "assets" / "convvae_controller.safetensors")
    assert message.startswith("loaded controller")
    assert session.vision_runtime is runtime  # V did not change: its runtime (an export, a check) is not redone
    with pytest.raises(CheckpointError):
        session.load_checkpoint(data / "episodes" / "ep_0000000000.npz")
    session.use_shipped("dds_vae")
    assert session.has_mask and session.config.vision_kind == "dds_vae"
    assert session.vision_runtime is not None and session.vision_runtime.vision is session.vision


def test_record_real_drive_to_dataset_and_video(session: Session, tmp_path: Path) -> None:
    session.start_recording()
    for _ in range(12):
        session.tick(GAS)
    session.recorder.stop()
    path = session.recorder.save_episode(tmp_path)
    episode = read_episode(path)
    assert episode.steps == 12 and episode.policy == "human" and episode.truncated[-1]
    assert np.array_equal(episode.frames[-1], session.real_frame)
    for name in ("drive.mp4", "drive.gif"):
        assert session.recorder.save_video(tmp_path / name).stat().st_size > 1000
    assert session.recorder.video_frames()[0].shape[1] == 2 * session.recorder.video_frames()[0].shape[0]


def test_record_a_dream_reshapes_frames_for_the_dataset(session: Session, tmp_path: Path) -> None:
    session.set_mode("dream")
    session.start_recording()
    for _ in range(5):
        session.tick(GAS)
    episode = session.recorder.episode()
    assert episode.frames.shape == (6, 96, 96, 3) and episode.policy == "dream:human"
    assert dream_to_episode_frame(np.full((64, 64, 3), 200, np.uint8))[-12:].max() == 0


def test_history_is_a_fixed_ring() -> None:
    ring = RingBuffer(4)
    for v in range(10):
        ring.append(v)
    assert ring.values().tolist() == [6, 7, 8, 9] and ring.last == 9 and len(ring) == 4
    assert len(RingBuffer().values()) == len(RingBuffer()) == 0 and HISTORY >= 100


# -- jobs ---------------------------------------------------------------------------------------------
def test_split_dream_resyncs_once_the_autopilot_start_has_zoomed_in(session: Session) -> None:
    session.horizon = 500
    session.set_driver("autopilot")
    session.reset_real()  # the autopilot starts from CarRacing's first, zoomed-in frame
    assert session.real_tally.step == 0
    episode = session.dream_tally.episode
    for _ in range(ZOOM_STEPS):
        session.tick(DriveKeys())
    assert session.dream_tally.episode == episode + 1 and session.dream_tally.step == 0
    assert np.array_equal(session.dream.z[0].numpy(), session.real_z)  # type: ignore[union-attr]
    for _ in range(10):
        session.tick(DriveKeys())
    assert session.dream_tally.episode == episode + 1 and session.dream_tally.step == 10


# -- speed: the same pictures with less work ------------------------------------------------------
def count_decodes(s: Session) -> list[int]:
    """Batch sizes of every V.decode call from now on."""
    sizes: list[int] = []
    decode = s.vision_runtime.decode  # type: ignore[union-attr]

    def counted(z: torch.Tensor) -> torch.Tensor:
        sizes.append(len(z))
        return decode(z)

    s.vision_runtime.decode = counted  # type: ignore[union-attr, method-assign]
    return sizes


def test_hidden_vision_panel_costs_no_decode_and_a_shown_one_shares_the_dreams_batch(data: Path) -> None:
    config = SessionConfig(
        vision_runtime="pytorch",
        assets=data / "assets",
        vision_kind="dds_vae",
        mode="split",
        futures=2,
        parallel_split=False,
        ground_dream=False,
    )
    s = Session(config)
    try:
        sizes = count_decodes(s)
        for _ in range(3):
            s.tick(GAS)
        assert sizes == [1, 1, 1]  # the first dream only: no reconstruction, no other futures
        s.wants_reconstruction = True
        sizes.clear()
        s.tick(GAS)  # due (never made): decoded with the dream, one call of batch 2
        assert sizes == [2]
        recon = s.reconstruction()
        assert sizes == [2] and recon is not None  # the panel reads it from the cache
        out = s.world_model.decode(s._real_z)  # type: ignore[union-attr, arg-type]
        assert np.abs(recon.output.astype(int) - to_uint8_hwc(out)[0].astype(int)).max() <= 1
    finally:
        s.close()


def test_with_the_dream_on_its_own_thread_a_shown_vision_panel_decodes_its_own_batch(data: Path) -> None:
    s = Session(
        SessionConfig(vision_runtime="pytorch", assets=data / "assets", vision_kind="dds_vae", mode="split", futures=2,
                      ground_dream=False)
    )  # fmt: skip
    try:
        sizes = count_decodes(s)
        s.wants_reconstruction = True
        s.tick(GAS)
        assert sizes == [1]  # the dream's decode, on its thread: it does not read the real side
        recon = s.reconstruction()
        assert sizes == [1, 1] and recon is not None
        s.tick(GAS)
        s.reconstruction()
        assert sizes == [1, 1, 1]  # not due again yet (RECON_PERIOD)
    finally:
        s.close()


@pytest.mark.parametrize("kind", ["conv_vae", "dds_vae"])
def test_the_dream_stepped_beside_reality_gives_the_same_states_and_frames(data: Path, kind: str) -> None:
    runs = {}
    for parallel in (True, False):
        s = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", vision_kind=kind, mode="split", futures=3, seed=7,
                                  parallel_split=parallel))  # fmt: skip
        threads: list[str] = []
        advance = s._advance_dream

        def spy(*args: object, advance=advance, threads=threads) -> tuple[float, bool]:
            threads.append(threading.current_thread().name)
            return advance(*args)  # type: ignore[arg-type]

        s._advance_dream = spy  # type: ignore[method-assign]
        try:
            for t in range(40):
                s.tick(DriveKeys(gas=True, left=10 <= t < 25))
            runs[parallel] = (s._real_z.clone(), s.dream.z.clone(), s.dream_frame().copy(),  # type: ignore[union-attr]
                              s.real_tally.ret, s.dream_tally.ret, s.history["div_pixel"].values().copy(),
                              s.road, threads)  # fmt: skip
        finally:
            s.close()
    (real_a, dream_a, frame_a, ret_a, dret_a, div_a, road_a, threads_a) = runs[True]
    (real_b, dream_b, frame_b, ret_b, dret_b, div_b, road_b, threads_b) = runs[False]
    assert set(threads_a) == {"dream-step_0"} and set(threads_b) == {"MainThread"} and len(threads_a) == 40
    assert ret_a == ret_b and torch.allclose(real_a, real_b, atol=1e-5)
    # the DDS+VAE's M runs on oneDNN beside its V there (one kernel choice for both threads): float-level noise
    assert torch.allclose(dream_a, dream_b, atol=1e-4) and dret_a == pytest.approx(dret_b, abs=1e-4)
    assert np.abs(frame_a.astype(int) - frame_b.astype(int)).max() <= 1
    assert np.allclose(div_a, div_b, atol=1e-5) and road_a.dream_steps == road_b.dream_steps == 40
    assert (road_a.dream, road_a.real) == pytest.approx((road_b.dream, road_b.real), abs=1e-3)


def test_dds_vae_on_onednn_channels_last_matches_the_native_path(data: Path) -> None:
    s = Session(
        SessionConfig(vision_runtime="pytorch", assets=data / "assets", vision_kind="dds_vae", mode="split", futures=1,
                      ground_dream=False)  # the dream's frame is V's decode of z
    )  # fmt: skip
    try:
        assert s.vision_onednn and s.vision.unet1.down[0][1][0].weight.is_contiguous(  # type: ignore[union-attr]
            memory_format=torch.channels_last
        )
        for _ in range(3):
            s.tick(GAS)
        fast_z, fast_dream = s._real_z.clone(), s.dream_frame().copy()  # type: ignore[union-attr]
        fast_mask = s.mask_views().mask.copy()  # type: ignore[union-attr]
        # the previous path: contiguous weights and input on the native kernels
        vision = s.vision.to(memory_format=torch.contiguous_format)  # type: ignore[union-attr]
        mkldnn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            with torch.inference_mode():
                mu, _, selected = vision.encode_with_mask(s.world_model.preprocess(s.real_frame))  # type: ignore[union-attr, operator]
                dream = to_uint8_hwc(vision.decode(s.dream.z[:1]))[0]  # type: ignore[union-attr, operator]
        finally:
            torch.backends.mkldnn.enabled = mkldnn
        assert torch.allclose(fast_z, mu, atol=1e-4)
        assert np.abs(fast_dream.astype(int) - dream.astype(int)).max() <= 1  # uint8 levels
        assert np.mean(fast_mask != to_uint8_hwc(selected.mask[0])) < 0.001  # top-k ties may flip a few
    finally:
        s.close()
