"""Dream-vs-real divergence: how far M's open-loop dream drifts from what really happened.

On held-out real episodes, M is run over the encoded real latents (z_t = mu_t, the real-env convention) to get
its state at each window start s; from there the batched dream continues open loop for H steps with the
*recorded* actions, ``samples`` times per window. At each horizon k the dream is compared with reality:

- latent MSE per dimension between dreamed z_{s+k} and the encoded real mu_{s+k}, against the "copy"
  baseline mu_s (a world that stands still), over all dimensions and over the active ones (mean KL above
  ``core.train.memory.ACTIVE_KL_NATS`` on the episode; the others are noise V's decoder ignores);
- pixel MSE (values in [0, 1], at V's resolution) between decode(dreamed z_{s+k}) and the real frame, against
  decode(mu_s) (copy), decode(mu_{s+k}) (V's own reconstruction floor) and one fixed frame, the mean real frame
  of the other episodes (:mod:`core.metrics.mean_frame`: a blur that a dream must beat to show where the road is);
- road share (:mod:`core.metrics.road`: the fraction of road-grey pixels) of decode(dreamed z_{s+k}) against the
  real frame's (and V's own reconstruction's), the share of dreams that keep at least half of reality's road,
  and the share that *track* it (within +-50%, or 0.02 absolute where reality is off the road);
- the dream's summed reward over the first k steps against the recorded real reward;
- parked: from one start per episode, both reality (the track replayed with the recorded actions up to the
  start) and the dream brake fully for the longest horizon; and parked from the start: from the reset frame,
  with the car at rest, no input at all. CarRacing pays -0.1 a step once the car stands, so a dream that pays
  more for parking teaches a controller not to drive;
- steering response: from one start per episode, the recorded actions but with the steering held at
  -STEER and then +STEER for STEER_STEPS steps (same random streams), in the dream and in reality (the track
  replayed up to the start); the road's horizontal offset (:func:`core.metrics.road.road_offset`, pixels at V's
  resolution) after steering right minus after steering left. Reality's is negative (a right turn moves the road
  to the left of the car); a dream whose response has the other sign, or none, does not obey the driver;
- coasting (with ``coast``): from every window start, the recorded steering with the gas at 0 for the longest
  horizon, in the dream (the same random streams as the recorded actions' dreams) and in reality (the track
  replayed up to the start); the return of each beside the recorded actions'. Reality pays less for coasting
  than for the driver's gas; a dream that pays coasting as well or better teaches a controller to leave the gas;
  with an M that has a speed head, also the speed at the end (M's head in the dream, the HUD in reality);
  with ``coast_brake`` the brake is held at that value too (how fast each world stops the car);
- speed (an M with a speed head, see ``MDNRNNConfig.speed_weight``): the speed M's head reads from the dream's
  h at each horizon against the HUD's in the real frame (:func:`core.envs.car_racing.hud_speed`);
- the share of dreamed latents whose norm exceeds the largest real latent norm (off the data manifold);
- nudged reality (with ``nudge``): reality itself from each window start, replayed on the track, with the steering
  nudged by -NUDGE and then +NUDGE for NUDGE_STEPS steps and the recorded actions after that; its road share
  against the recorded frames'. This is a perfect model of the car and the track whose start differs by a nudge
  far smaller than a dream's error after a few steps, so its tracking bounds what any model can reach open loop
  fed the recorded actions (they hold the original line's corrections, not the nudged car's);
- closed loop (with ``controller``): from the same window starts a controller drives the dream itself, reading
  the dream's own ``[z, h]`` as it would reality's, so no real action carries what reality's road does next. The
  road share of the dream at each horizon against reality's at the same step (the episode's own driver on its
  track), the share of dreams that keep at least half of it, and the dream's reward. Open loop, a dream that
  obeys the driver loses the road wherever the road it invents ahead bends unlike reality's (reality's actions
  follow reality's bends); closed loop, a driver who sees the dream's road can follow it, which is what a person
  driving in the dream and a controller trained there do.

With ``dream_map`` open-loop dreams keep a map of the ground shown (:mod:`core.envs.dream_map`); the figures read it.
With ``map_pose`` "car" each dream's car is CarRacing's own car physics over that map (:mod:`core.envs.dream_car`),
with figures of its own (:meth:`core.divergence_map.EpisodeMaps.figures`).

A dream is stochastic, so a perfect M would not reach zero: the figures compare models and temperatures.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict

import cv2
import numpy as np
import torch
from torch import Tensor

from core.checkpoint import check_output_file
from core.config import check_finite
from core.data.episodes import list_episodes, read_episode
from core.divergence_map import EpisodeMaps
from core.envs.car_racing import hud_speed, hud_yaw_rate, to_uint8_hwc
from core.envs.dream import BatchedDream, window_seeds
from core.envs.world_model import WorldModel
from core.errors import ConfigError, EpisodeError
from core.metrics.mean_frame import MeanFrameBaseline
from core.metrics.replay import real_drive, real_frames_after
from core.metrics.road import road_offset, road_share, tracks_road
from core.progress import Progress, ProgressFn, never_stop, no_progress
from core.train.loop import StageResult
from core.train.memory import active_dims
from core.video import write_png_grid


@dataclass(frozen=True)
class DivergenceConfig:
    """Measure how M's dream drifts from held-out reality (``dream-explorer divergence``)."""

    data_dir: Path = Path("data/heldout")
    """Held-out episode files (not used to train V or M)."""
    vision: Path = Path("runs/vision.safetensors")
    """Vision checkpoint (either kind)."""
    memory: Path = Path("runs/memory.safetensors")
    """MDN-RNN checkpoint trained on that vision model's latents."""
    horizons: tuple[int, ...] = (1, 10, 30, 100)
    """Dream steps after which the dream is compared with reality."""
    warmup: int = 50
    """Real steps M sees before the first window (the zoom-in at an episode's start is skipped)."""
    start_every: int = 50
    """A window starts every this many real steps."""
    samples: int = 4
    """Dreams per window (different random streams)."""
    tau: float = 1.0
    """MDN temperature of the dream."""
    max_episodes: int = 0
    """Use at most this many episodes (0 = all)."""
    seed: int = 0
    """Seed of the dreams' random streams."""
    parked: bool = True
    """Also measure the parked return (dream vs reality, see the module doc; costs real env steps)."""
    steer: bool = True
    """Also measure the steering response (dream vs reality, see the module doc; costs real env steps)."""
    coast: bool = False
    """Also measure coasting (see the module doc; costs real env steps: a replay of the track up to every window
    start)."""
    coast_brake: float = 0.0
    """Brake held while coasting, in [0, 1] (0: the gas released alone)."""
    nudge: bool = False
    """Also measure nudged reality (see the module doc): the open-loop ceiling of road tracking (costs real env
    steps: a replay of the track up to every window start)."""
    controller: Path | None = None
    """Controller on this V and M (``[z, h]``, or ``z`` for a V-only one) that also drives the dream closed loop
    from every window start (see the module doc); unset: open loop only."""
    json: bool = False
    """Print one JSON object instead of the table."""
    strip: Path | None = None
    """PNG to write beside the figures: for the first ``strip_windows`` windows, reality's frame at the window
    start and after each horizon, above the first dream's decoded frame at the same steps (its start: V's
    reconstruction of reality's), each labelled with its road share; unset: no image."""
    strip_windows: int = 8
    """Windows in the ``strip`` image (rows of reality and dream)."""
    dream_map: bool = False
    """Open-loop dreams keep a map of what they have shown (:mod:`core.envs.dream_map`); their frames are the
    composites. With ``map_pose`` "dream" it needs an M that reads the yaw rate."""
    map_history: int = 0
    """With ``dream_map``: reality's frames (V's reconstructions) of this many steps before each window start are on
    the map first, carried by the HUD's speed and yaw rate (after ``warmup``)."""
    map_pose: Literal["dream", "reality", "car"] = "dream"
    """With ``dream_map``: what moves the map's car: the dream's own speed and yaw rate (an M that reads the yaw
    rate), reality's HUD readings (any M; a diagnostic: the map with the car's true motion), or CarRacing's car
    physics started from the real car's state and driven on the map's ground (:mod:`core.envs.dream_car`; any M;
    replays each episode's track to get the car's state), its return also by CarRacing's reward rule."""

    def __post_init__(self) -> None:
        check_finite(self)
        if not self.horizons or min(self.horizons) < 1:
            raise ConfigError(f"horizons must be >= 1, got {self.horizons}")
        if self.warmup < 0 or self.start_every < 1 or self.samples < 1 or not 0 <= self.tau < float("inf"):
            raise ConfigError("warmup must be >= 0, start_every and samples >= 1, tau finite and >= 0")
        if self.strip_windows < 1:
            raise ConfigError(f"strip_windows must be >= 1, got {self.strip_windows}")
        if not 0.0 <= self.coast_brake <= 1.0:
            raise ConfigError(f"coast_brake must be in [0, 1], got {self.coast_brake}")
        if self.map_history < 0:
            raise ConfigError(f"map_history must be >= 0, got {self.map_history}")
        if not self.dream_map and (self.map_history or self.map_pose != "dream"):
            raise ConfigError("map_history and map_pose need dream_map")


@torch.no_grad()
def dream_divergence(
    config: DivergenceConfig,
    *,
    on_progress: ProgressFn = no_progress,
    should_stop: threading.Event | None = None,
) -> StageResult:
    """Run the measurement; metrics are ``divergence/<name>@<k>`` for each horizon k (see the module doc).

    Raises:
        EpisodeError: no episode long enough for warmup + the longest horizon.
        CheckpointError: bad checkpoints or no memory model.
        ConfigError: ``dream_map`` on the dream's own motion with an M that does not read the yaw rate.
    """
    t0 = time.perf_counter()
    stop = should_stop or never_stop()
    if config.strip is not None:
        check_output_file(config.strip, "strip image")
    wm = WorldModel.load(config.vision, config.memory, config.controller)
    memory = wm.require_memory()
    if config.dream_map and config.map_pose == "dream" and not memory.config.yaw_input:
        raise ConfigError("dream_map needs an M that reads the yaw rate (train-memory --yaw-input) or map_pose reality")
    horizon = max(config.horizons)
    files = list_episodes(config.data_dir)
    if config.max_episodes:
        files = files[: config.max_episodes]
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key: str, value: float, n: int) -> None:
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + n

    max_norm = 0.0
    windows = 0
    strip: list[tuple[str, list[Tensor], list[Tensor]]] = []  # per window: label, real frames, dream frames
    dream_norms: list[torch.Tensor] = []
    mean_frame = MeanFrameBaseline()
    for e, path in enumerate(files):
        if stop.is_set():
            break
        ep = read_episode(path)
        steps = len(ep.actions)
        starts = list(range(config.warmup, steps - horizon + 1, config.start_every))
        if not starts:
            continue
        on_progress(Progress("divergence", e, len(files), message=f"{path.name}: {len(starts)} windows"))
        x = wm.preprocess(ep.frames)  # (T+1, 3, S, S) float in [0, 1]
        mean_frame.episode(x)
        posterior = [wm.vision.encode(x[i : i + 256]) for i in range(0, len(x), 256)]
        mu = torch.cat([p[0] for p in posterior])
        logvar = torch.cat([p[1] for p in posterior])
        active = torch.from_numpy(active_dims(mu.numpy(), logvar.numpy()))
        if not bool(active.any()):
            active = torch.ones_like(active)
        max_norm = max(max_norm, float(mu.norm(dim=1).max()))
        actions = torch.from_numpy(np.asarray(ep.actions, np.float32))
        rewards = torch.from_numpy(np.asarray(ep.rewards, np.float64))
        hud = torch.from_numpy(hud_speed(ep.frames)), torch.from_numpy(hud_yaw_rate(ep.frames))  # M's and the map's
        real_speed = hud[0] if memory.speed_head is not None else None
        real_yaw = hud[1] if memory.config.yaw_input else None
        # M over reality, keeping its state (h, c) before each window start
        state = memory.initial_state(1)
        states: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for t in range(max(starts) + 1):
            if t in starts:
                states[t] = (state[0][0, 0].clone(), state[1][0, 0].clone())
            if t < max(starts):
                _, state = memory.step(
                    mu[t : t + 1], actions[t : t + 1], state, _at(real_speed, t, t + 1), _at(real_yaw, t, t + 1)
                )
        idx = torch.tensor(starts).repeat_interleave(config.samples)
        n = len(idx)
        dream = BatchedDream(memory, n, tau=config.tau, max_steps=horizon)
        h0 = torch.stack([states[int(s)][0] for s in idx]).unsqueeze(0)
        c0 = torch.stack([states[int(s)][1] for s in idx]).unsqueeze(0)
        seeds = window_seeds(config.seed, e, n)
        dream.reset(seeds, z=mu[idx], state=(h0, c0), **_car_at(real_speed, real_yaw, idx))
        dream_reward = torch.zeros(n, dtype=torch.float64)
        copy_frames = wm.decode(mu[idx])  # the standing-still baseline, the same at every horizon
        maps = EpisodeMaps(wm, config, ep, mu, hud, idx, copy_frames) if config.dream_map else None
        shown = starts[: max(0, config.strip_windows - len(strip))] if config.strip is not None else []
        for j, s0 in enumerate(shown):
            strip.append((f"{path.stem}\nstep {s0}", [x[s0].clone()], [copy_frames[j * config.samples].clone()]))
        first = len(strip) - len(shown)
        real_cum = torch.cat([torch.zeros(1, dtype=torch.float64), rewards.cumsum(0)])
        for k in range(1, horizon + 1):
            _, r, _, _ = dream.step(actions[idx + k - 1])
            shown_frames = None if maps is None else maps.step(dream, actions[idx + k - 1], k)
            dream_reward += r.double()
            dream_norms.append(dream.z.norm(dim=1))
            if k in config.horizons:
                real_z, frames = mu[idx + k], x[idx + k]
                dream_frames = wm.decode(dream.z) if shown_frames is None else shown_frames
                vision_frames = wm.decode(real_z)
                real_road, dream_road = road_share(frames), road_share(dream_frames)
                for j in range(len(shown)):  # copies: a view would keep the whole episode's frames alive
                    strip[first + j][1].append(frames[j * config.samples].clone())
                    strip[first + j][2].append(dream_frames[j * config.samples].clone())
                add(f"road_share_real@{k}", float(real_road.sum()), n)
                add(f"road_share_dream@{k}", float(dream_road.sum()), n)
                add(f"road_share_vision@{k}", float(road_share(vision_frames).sum()), n)
                add(f"road_kept@{k}", float((dream_road >= 0.5 * real_road).sum()), n)
                add(f"road_tracked@{k}", float(tracks_road(dream_road, real_road).sum()), n)
                dream_speed = dream.predicted_speed()  # M's speed against the HUD's
                if real_speed is not None and dream_speed is not None:
                    add(f"speed_dream@{k}", float(dream_speed.sum()), n)
                    add(f"speed_real@{k}", float(real_speed[idx + k].sum()), n)
                real_k = real_cum[idx + k] - real_cum[idx]
                add(f"reward_sum_dream@{k}", float(dream_reward.sum()), n)
                add(f"reward_sum_real@{k}", float(real_k.sum()), n)
                add(f"reward_sum_abs_error@{k}", float((dream_reward - real_k).abs().sum()), n)
                for name, (value, count) in ({} if maps is None else maps.figures(k, dream, real_k)).items():
                    add(f"{name}@{k}", value, count)  # the grounded dream's: the reward rule, its car against reality's
                add(f"latent_mse_dream@{k}", float((dream.z - real_z).pow(2).mean(1).sum()), n)
                add(f"latent_mse_copy@{k}", float((mu[idx] - real_z).pow(2).mean(1).sum()), n)
                dz, cz = (dream.z - real_z)[:, active], (mu[idx] - real_z)[:, active]
                add(f"latent_mse_dream_active@{k}", float(dz.pow(2).mean(1).sum()), n)
                add(f"latent_mse_copy_active@{k}", float(cz.pow(2).mean(1).sum()), n)
                add(f"pixel_mse_dream@{k}", float((dream_frames - frames).pow(2).flatten(1).mean(1).sum()), n)
                add(f"pixel_mse_copy@{k}", float((copy_frames - frames).pow(2).flatten(1).mean(1).sum()), n)
                add(f"pixel_mse_vision@{k}", float((vision_frames - frames).pow(2).flatten(1).mean(1).sum()), n)
                mean_frame.add(k, frames)
        if maps is not None:
            maps.close()
        if config.nudge:
            for s0 in starts:
                for sign in (-1.0, 1.0):
                    nudged = actions[s0 : s0 + horizon].clone()
                    nudged[:NUDGE_STEPS, 0] = (nudged[:NUDGE_STEPS, 0] + sign * NUDGE).clamp(-1.0, 1.0)
                    obs = real_frames_after(ep, s0, nudged.numpy(), config.horizons)
                    if obs is None:
                        continue
                    nudged_road = road_share(wm.preprocess(obs))
                    for j, k in enumerate(config.horizons):
                        real_road = road_share(x[s0 + k : s0 + k + 1])
                        add(f"nudged_road_share@{k}", float(nudged_road[j]), 1)
                        add(f"nudged_road_tracked@{k}", float(tracks_road(nudged_road[j : j + 1], real_road)[0]), 1)
        if wm.controller is not None:
            ahead = x[idx.unsqueeze(1) + torch.tensor(config.horizons)]  # reality's frames at every horizon
            _closed_loop(wm, memory, config, mu[idx], (h0, c0), seeds, ahead, add, _car_at(real_speed, real_yaw, idx))
        if config.coast:  # from every window: the recorded steering with no gas, dream vs reality (paired streams)
            m, coasting = config.samples, actions[idx.unsqueeze(1) + torch.arange(horizon)].clone()
            coasting[..., 1], coasting[..., 2] = 0.0, config.coast_brake
            coast = BatchedDream(memory, n, tau=config.tau, max_steps=horizon)
            coast.reset(seeds, z=mu[idx], state=(h0, c0), **_car_at(real_speed, real_yaw, idx))
            coast_reward = torch.stack([coast.step(coasting[:, t])[1].double() for t in range(horizon)]).sum(0)
            coast_speed = coast.predicted_speed()
            for j, s0 in enumerate(starts):
                drive = real_drive(ep, s0, coasting[j * m].numpy())
                if drive is not None:
                    real_coast, rows = drive[0], slice(j * m, (j + 1) * m)
                    if coast_speed is not None:
                        add(f"coast_speed_dream@{horizon}", float(coast_speed[rows].sum()), m)
                        add(f"coast_speed_real@{horizon}", float(hud_speed(drive[1])) * m, m)
                    add(f"coast_reward_dream@{horizon}", float(coast_reward[rows].sum()), m)
                    add(f"coast_reward_real@{horizon}", real_coast * m, m)
                    add(f"coast_recorded_dream@{horizon}", float(dream_reward[rows].sum()), m)
                    add(f"coast_recorded_real@{horizon}", float(real_cum[s0 + horizon] - real_cum[s0]) * m, m)
        if config.parked:
            m = config.samples
            brake, idle = (0.0, 0.0, 1.0), (0.0, 0.0, 0.0)
            # from mid-episode, full brake; from the reset frame (car at rest), no input at all
            for name, s0, action in (("parked", starts[len(starts) // 2], brake), ("parked_start", 0, idle)):
                drive = real_drive(ep, s0, np.tile(np.asarray(action, np.float32), (horizon, 1)))
                if drive is None:
                    continue
                if s0 == 0:
                    h_s, c_s = (t[0, 0] for t in memory.initial_state(1))
                else:
                    h_s, c_s = states[s0]
                parked = BatchedDream(memory, m, tau=config.tau, max_steps=horizon)
                parked.reset(seeds[:m], z=mu[s0].expand(m, -1),
                             state=(h_s.expand(1, m, -1).contiguous(), c_s.expand(1, m, -1).contiguous()),
                             **_car_at(real_speed, real_yaw, s0))  # fmt: skip
                held = torch.tensor([action]).expand(m, 3)
                parked_reward = torch.zeros(m, dtype=torch.float64)
                for _ in range(horizon):
                    parked_reward += parked.step(held)[1].double()
                add(f"{name}_reward_dream@{horizon}", float(parked_reward.sum()), m)
                add(f"{name}_reward_real@{horizon}", drive[0] * m, m)
        if config.steer and starts[len(starts) // 2] + STEER_STEPS <= steps:
            s0, m = starts[len(starts) // 2], config.samples
            h_s, c_s = states[s0]
            real_offsets, dream_offsets = [], []
            for sign in (-1.0, 1.0):
                held = actions[s0 : s0 + STEER_STEPS].clone()
                held[:, 0] = sign * STEER
                real_turned = real_frames_after(ep, s0, held.numpy(), (STEER_STEPS,))
                if real_turned is None:
                    break
                real_offsets.append(road_offset(wm.preprocess(real_turned))[0][0])
                turned = BatchedDream(memory, m, tau=config.tau, max_steps=STEER_STEPS)
                turned.reset(seeds[:m], z=mu[s0].expand(m, -1),
                             state=(h_s.expand(1, m, -1).contiguous(), c_s.expand(1, m, -1).contiguous()),
                             **_car_at(real_speed, real_yaw, s0))  # fmt: skip
                for t in range(STEER_STEPS):
                    turned.step(held[t].expand(m, 3))
                dream_offsets.append(road_offset(wm.decode(turned.z))[0])
            if len(real_offsets) == 2:  # right minus left, per dream (same random streams) and in reality
                add("steer_response_dream", float((dream_offsets[1] - dream_offsets[0]).sum()), m)
                add("steer_response_real", float(real_offsets[1] - real_offsets[0]), 1)
        windows += len(starts)
    if not windows:
        raise EpisodeError(
            f"no episode in {config.data_dir} is longer than warmup {config.warmup} + horizon {horizon} steps"
        )
    if config.strip is not None:
        _write_strip(config.strip, strip, config.horizons)
    for k, (value, n) in mean_frame.sums().items():
        add(f"pixel_mse_mean@{k}", value, n)
    metrics = {f"divergence/{k}": sums[k] / counts[k] for k in sums}
    norms = torch.cat(dream_norms)
    metrics["divergence/off_manifold_share"] = float((norms > max_norm).float().mean())
    metrics["divergence/windows"] = float(windows)
    if config.coast:
        metrics["divergence/coast_brake"] = config.coast_brake
    metrics["divergence/dreams"] = float(windows * config.samples)
    return StageResult(None, metrics, stop.is_set(), time.perf_counter() - t0)


def _write_strip(path: Path, windows: list[tuple[str, list[Tensor], list[Tensor]]], horizons: tuple[int, ...]) -> None:
    """The ``strip`` PNG: per window a row of reality's frames and a row of the dream's, each frame float32
    (3, S, S) in [0, 1], labelled with its road share (:func:`core.metrics.road.road_share`)."""
    rows, labels = [], []
    for label, real, dream in windows:
        for name, frames in (("real", real), ("dream", dream)):
            stacked = torch.stack(frames)
            tiles = [np.ascontiguousarray(t) for t in to_uint8_hwc(stacked)]
            for tile, share in zip(tiles, road_share(stacked).tolist(), strict=True):
                cv2.putText(tile, f"{share:.2f}", (2, 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1)
            rows.append(tiles)
            labels.append(f"{label}\n{name}" if name == "real" else name)
    write_png_grid(path, rows, ["start", *(f"+{k} steps" for k in horizons)], labels)


class _Car(TypedDict):
    speed: torch.Tensor | None
    yaw: torch.Tensor | None


def _car_at(speed: torch.Tensor | None, yaw: torch.Tensor | None, index: Any) -> _Car:
    """The car state at ``index`` of reality's per-frame speeds and yaw rates, as :meth:`BatchedDream.reset`'s
    keyword arguments (None where the M does not read it)."""
    return {"speed": _at(speed, index), "yaw": _at(yaw, index)}


def _at(speed: torch.Tensor | None, index: Any, stop: int | None = None) -> torch.Tensor | None:
    """``speed[index]`` (or ``speed[index:stop]``) of reality's HUD speeds, None without them."""
    if speed is None:
        return None
    return speed[index:stop] if stop is not None else speed[index]


def _closed_loop(wm: WorldModel, memory: Any, config: DivergenceConfig, z0: torch.Tensor,
                 state: tuple[torch.Tensor, torch.Tensor], seeds: list[int], real_frames: torch.Tensor,
                 add: Any, car: _Car) -> None:  # fmt: skip
    """The controller drives the dream from each window start (see the module doc); ``real_frames`` float32
    (N, len(horizons), 3, S, S) are reality's frames at the horizons; ``car`` reality's speeds and yaw rates (N,)
    at the starts (:func:`_car_at`)."""
    controller = wm.controller
    assert controller is not None
    n, horizon = len(z0), max(config.horizons)
    dream = BatchedDream(memory, n, tau=config.tau, max_steps=horizon)
    obs = dream.reset(seeds, z=z0, state=state, **car)
    v_only = controller.config.input_dim == wm.z_dim
    reward = torch.zeros(n, dtype=torch.float64)
    for k in range(1, horizon + 1):
        obs, r, _, _ = dream.step(controller(obs[:, : wm.z_dim] if v_only else obs))
        reward += r.double()
        if k in config.horizons:
            real_road = road_share(real_frames[:, config.horizons.index(k)])
            dream_road = road_share(wm.decode(dream.z))
            add(f"closed_road_share_dream@{k}", float(dream_road.sum()), n)
            add(f"closed_road_kept@{k}", float((dream_road >= 0.5 * real_road).sum()), n)
            add(f"closed_reward_sum_dream@{k}", float(reward.sum()), n)


STEER = 0.6
"""Steering held in the steering-response measurement (CarRacing's steer is in [-1, 1])."""
STEER_STEPS = 20
"""Steps the steering is held."""


NUDGE = 0.2
"""Steering offset of the nudged-reality baseline (CarRacing's steer is in [-1, 1])."""
NUDGE_STEPS = 2
"""Steps the nudge lasts."""
