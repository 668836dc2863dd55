"""The session's dream: N futures batched in one :class:`core.api.BatchedDream`, where they start, their
spread, their decoded frames and how much road they keep against reality (a part of
:class:`explorer.session.Session`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import Tensor

from core.api import (
    BatchedDream,
    DreamExplorerError,
    hud_speed,
    hud_yaw_rate,
    list_episodes,
    read_episode,
    road_share,
    sample_mdn,
    to_uint8_hwc,
    tracks_road,
)
from explorer.session_parts import SessionParts
from explorer.session_state import (
    REAL_ROAD_MIN,
    SPREAD_PERIOD,
    SPREAD_SAMPLES,
    ZOOM_STEPS,
    DreamSource,
    RoadShares,
    Tally,
)

log = logging.getLogger("explorer")


class DreamSide(SessionParts):
    """The dream of a :class:`explorer.session.Session`. Mixed into Session; its state is set in
    ``Session.__init__``."""

    # ------------------------------------------------------------------------------------------------
    # dream
    # ------------------------------------------------------------------------------------------------
    def start_dream(self, source: DreamSource | None = None, z: np.ndarray | None = None) -> None:
        """Start ``futures`` dreams from one state.

        Args:
            source: ``"real"``: the current real frame and, when M tracks reality, its LSTM state (the dream
                continues where reality stands); ``"random"``: z ~ N(0, I); ``"dataset"``: a random frame of a
                random episode in ``data_dir``. Default: ``dream_source``.
            z: start from this latent (float32 (z_dim,)) with a zero LSTM state instead.
        """
        if not self.can_dream:
            return
        wm = self.world_model
        assert wm is not None
        source = source or self.dream_source
        state, speed, yaw = None, 0.0, 0.0  # a dream from a frame without its past starts at rest
        if z is not None:
            z0 = torch.as_tensor(np.asarray(z, np.float32)).view(1, -1)
        elif source == "real":
            self._settle_real()
            assert self._real_z is not None
            z0, state = self._real_z, self._real_state
            speed, yaw = float(hud_speed(self.real_frame)), float(hud_yaw_rate(self.real_frame))
        elif source == "random":
            z0 = torch.randn(1, wm.z_dim, generator=self.torch_rng)
        else:
            try:
                self.dataset_frame = self.pick_dataset_frame()
            except DreamExplorerError as exc:
                log.warning("dream from the dataset: %s; dreaming from the real frame", exc)
                self.start_dream("real")
                return
            with self._inference("encode", vision=True):
                z0 = wm.encode(self.dataset_frame)[0]
            speed, yaw = float(hud_speed(self.dataset_frame)), float(hud_yaw_rate(self.dataset_frame))
        if self.dream is None or self.dream.n != self.futures or self.dream.memory is not wm.memory:
            self.dream = BatchedDream(wm.require_memory(), self.futures, tau=self._tau, max_steps=self._horizon)
        seeds = self.rng.integers(0, 2**31, size=self.futures).tolist()
        with self._inference("memory"):
            self.dream.reset(seeds, z=z0, state=state, speed=speed, yaw=yaw)
        self._ground_start("edit" if z is not None else source)
        self.dream_tally = Tally(episode=self.dream_tally.episode + 1)
        self.dream_origin = "edit" if z is not None else source
        self.history["dream_return"].clear()
        self.history["dream_speed"].clear()
        self._read_dream_speed()
        self.dream_version += 1
        self._measure_road(restarted=True)

    def pick_dataset_frame(self) -> np.ndarray:
        """A random frame (past the zoom-in) of a random episode in ``data_dir``, uint8 (96, 96, 3).

        Raises:
            EpisodeError: no episodes or a corrupt one.
        """
        files = list_episodes(self.data_dir)
        frames = read_episode(files[int(self.rng.integers(len(files)))]).frames
        return np.array(frames[int(self.rng.integers(min(ZOOM_STEPS, len(frames) - 1), len(frames)))])

    def _dream_actions(self, action: np.ndarray) -> Tensor:
        """Actions of the N dreams, float32 (N, 3): in dream mode the autopilot acts on each dream's own
        ``[z, h]``; otherwise every dream gets ``action`` (reality's, in split mode)."""
        assert self.dream is not None
        if self.driver == "autopilot" and self.mode == "dream" and self.can_autopilot and self.dream.n > 1:
            assert self.world_model is not None and self.world_model.controller is not None
            controller = self.world_model.controller
            obs = self.dream.observation()
            if controller.config.hidden_dim == 0:
                obs = obs[:, : self.world_model.z_dim]
            with self._inference("controller"):
                return controller(obs)
        return torch.from_numpy(action).view(1, 3).expand(self.dream.n, 3)

    def _step_dream(self, action: np.ndarray) -> tuple[float, bool]:
        """One dream step with ``action`` and its bookkeeping: ``(reward, done)`` of the first dream."""
        reward, done = self._advance_dream(action)
        self._dream_stepped(reward)
        return reward, done

    def _advance_dream(self, action: np.ndarray, decode: bool = False) -> tuple[float, bool]:
        """The model work of a dream step: M steps the N dreams; with ``decode``, V decodes the frames on view
        (never the reconstruction, so the real side is not read). Touches only the dream's state, so it can run
        on a second thread while the real env steps (split mode)."""
        assert self.dream is not None
        actions = self._dream_actions(action)
        with self._inference("memory"):
            _, reward, _, _ = self.dream.step(actions)
        self.dream_version += 1
        ruled = self._ground_step(actions)  # a grounded dream is paid by CarRacing's rule, not M's reward head
        if decode:
            self.dream_frames(recon=False)
        return float(reward[0]) if ruled is None else ruled, bool(self.dream.done[0])

    def _dream_stepped(self, reward: float) -> None:
        """After a dream step: the return, the spread of the futures, the road shares."""
        assert self.dream is not None
        self.dream_tally.add(reward)
        self.history["dream_return"].append(self.dream_tally.ret)
        if self.dream.n > 1:
            self.history["spread"].append(self.dream_spread())
        self._read_dream_speed()
        self._measure_road()

    def _read_dream_speed(self) -> None:
        """The first dream's speed (its car's in a grounded dream, else M's, ``BatchedDream.predicted_speed``), into
        :attr:`dream_speed` and its history."""
        if self._ground is not None:
            speed = self._ground[1].speed()
        elif self.dream is None or self.dream.memory.speed_head is None:
            speed = None
        else:
            with self._inference("memory"):
                speed = self.dream.predicted_speed()
        self.dream_speed = None if speed is None else float(speed[0])
        if self.dream_speed is not None:
            self.history["dream_speed"].append(self.dream_speed)

    @property
    def dream_z(self) -> np.ndarray | None:
        """z of the first dream, float32 (z_dim,), or None when not dreaming."""
        return None if self.dream is None else self.dream.z[0].numpy()

    def dream_spread(self) -> float:
        """Spread of the N dreams: the std over dreams of z, averaged over dimensions (0 for one dream)."""
        if self.dream is None or self.dream.n < 2:
            return 0.0
        return float(self.dream.z.std(0).mean())

    def next_step_spread(self) -> float:
        """How far z_{t+1} scatters at the current tau from the first dream's state and the current action.

        The std over SPREAD_SAMPLES draws of ``sample_mdn`` (logits / tau, noise * sqrt(tau)), averaged over
        dimensions; it shows what the temperature does before the dream takes the step. 0 when not dreaming.
        A new tau shows at once; new steps at most every SPREAD_PERIOD seconds (a figure to read, not a plot).
        """
        if self.dream is None or self.world_model is None:
            return 0.0
        key = (self.dream_version, self._tau, tuple(self.action.tolist()))
        cached = self._cache.get("spread")
        now = time.monotonic()
        if cached is not None:
            (old_key, when), value = cached
            if old_key == key or (old_key[1] == self._tau and now - when < SPREAD_PERIOD):
                return float(value)
        memory = self.world_model.require_memory()
        h, c = self.dream.state
        with self._inference("memory"):
            speed = self.dream.speed[:1] if self.dream.speed_input else None
            yaw = self.dream.yaw[:1] if self.dream.yaw_input else None
            out, _ = memory.step(
                self.dream.z[:1], torch.from_numpy(self.action).view(1, 3), (h[:, :1], c[:, :1]), speed, yaw
            )
            k = SPREAD_SAMPLES
            draws = sample_mdn(
                out.log_pi.expand(k, -1, -1), out.mu.expand(k, -1, -1), out.log_sigma.expand(k, -1, -1),
                self._tau, generator=self.torch_rng, joint=memory.config.joint,
            )  # fmt: skip
        spread = float(draws.std(0).mean())
        self._cache["spread"] = ((key, now), spread)
        return spread

    def dream_frames(self, recon: bool = True) -> np.ndarray | None:
        """Decoded dreams, uint8 (K, S, S, 3): all N when ``decode_all_futures`` else the first. None when idle.
        With ``recon`` a due reconstruction is decoded in the same batch (see ``_batched_reconstruction``)."""
        if self.dream is None or self.world_model is None:
            return None
        k = self.dream.n if self.decode_all_futures else 1
        cached = self._cache.get("dream")
        if cached is not None and cached[0] == self.dream_version and len(cached[1]) >= k:
            return cached[1]
        now = time.monotonic()
        real_z = self._real_z
        with_recon = recon and self._batched_reconstruction and real_z is not None and self._recon_due(now)
        z = torch.cat([self.dream.z[:k], real_z]) if with_recon and real_z is not None else self.dream.z[:k]
        assert self.vision_runtime is not None
        with self._inference("decode", vision=True):
            decoded = self.vision_runtime.decode(z)
        if with_recon:  # one batch for both: V's decode costs less per image at batch 2 than at batch 1
            self._recon_seconds = (time.monotonic() - now) / len(z)
            self._make_reconstruction(decoded[k:], now)
            decoded = decoded[:k]
        frames = to_uint8_hwc(decoded)
        self._cache["dream"] = (self.dream_version, frames)
        self._cache["dream_x"] = (self.dream_version, decoded[:1])
        return frames

    def dream_frame(self) -> np.ndarray | None:
        """The first dream, decoded: uint8 (S, S, 3), or None."""
        frames = self.dream_frames()
        return None if frames is None else frames[0]

    @property
    def road(self) -> RoadShares | None:
        """Road shares of the current frames: reality's and the dream's in split mode, the dream's alone in dream
        mode, None in real mode or without a dream."""
        road = self._road
        if road is None or self.dream is None or self.mode == "real":
            return None
        if self.mode == "dream" and road.real is not None:  # measured in split mode, before a switch
            return RoadShares(road.dream, None, None, road.dream_steps)
        return road

    def _measure_road(self, restarted: bool = False) -> None:
        """Measure the road shares of the current frames (after a dream step, or at a (re)start with
        ``restarted``), and in split mode append them to the history.

        No extra model pass: the dream's share comes from the decode the view shows (cached per step; split mode
        decodes every step anyway for the divergence), reality's from V's input, already made to encode the frame.
        """
        if self.dream is None or self.mode == "real":
            self._road = None
            return
        self.dream_frames()
        cached = self._cache.get("dream_x")
        assert cached is not None and cached[0] == self.dream_version
        dream = road_share(cached[1])
        steps = self.dream_tally.step  # 0 at a (re)start
        if self.mode != "split" or self._real_x is None:
            self._road = RoadShares(float(dream[0]), None, None, steps)
            return
        real = road_share(self._real_x)
        tracks = bool(tracks_road(dream, real)[0])
        previous = 0 if self._road is None else self._road.lost_steps
        lost = 0 if restarted or tracks or float(real[0]) <= REAL_ROAD_MIN else previous + 1
        self._road = RoadShares(float(dream[0]), float(real[0]), tracks, steps, lost)
        if not restarted:
            self.history["road_real"].append(float(real[0]))
            self.history["road_dream"].append(float(dream[0]))

    def _record_divergence(self) -> None:
        """Reality vs dream, same actions: RMS latent distance and pixel MSE of decode(z_dream) vs V's input."""
        assert self.dream is not None and self._real_z is not None and self._real_x is not None
        latent = float((self.dream.z[0] - self._real_z[0]).pow(2).mean().sqrt())
        frame = self.dream_frame()
        assert frame is not None
        x = self._real_x[0].permute(1, 2, 0).numpy()
        pixel = float(np.mean((frame.astype(np.float32) / 255.0 - x) ** 2))
        self.history["div_latent"].append(latent)
        self.history["div_pixel"].append(pixel)
