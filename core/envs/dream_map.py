"""The dream's map: a world-fixed canvas of everything a dream has shown, so road that leaves the view comes back.

CarRacing's frame is the car's own view of a static world: the camera follows the car, turned with it, at a fixed
zoom. A V + M dream has no place to keep what leaves that view; a car that spins on the grass never sees again the
road it left (docs/history.md, session 35). The map keeps it. Each dream carries its car's pose (stepped from its
own speed and yaw rate, world units per second and rad/s, with :meth:`DreamMap.advance`, or set from CarRacing's car
physics, :mod:`core.envs.dream_car`, with :meth:`DreamMap.place`) and a canvas in world coordinates:

- reality's frames (the dream's start, and optionally reality's past) are written to it as they are;
- ground M draws stays M's while it is in view: M redraws it at every step (a road ahead bends where the driver
  steers, and a dream whose road was frozen the moment it appeared would leave the driver on the grass); the map
  keeps the running mean of M's last drawings of each place inside the view (past the :data:`EDGE_MARGIN` bands
  where new ground enters), and keeps it for good once the place leaves the view;
- the dream shows the map from the new pose, with M's own frame where the map keeps nothing and on the car's
  sprite, the two blended across a few pixels at their edges (no hard seam), and V encodes that composite into the
  z M reads next.

It is a memory in the spirit of GameGAN's (Kim et al., 2020, "Learning to Simulate Dynamic Environments with
GameGAN", section 3.2), with the geometry of the view written down instead of learned. Memory: 9 float32 channels of
600 x 600 per dream, 13 MB.

Geometry (gymnasium's ``car_racing.py``, CarRacing-v3): the window is 1000 x 800 px at ``ZOOM * SCALE`` = 16.2 px
per world unit, the car at x = 500, y = 600 from the top, its heading up; the env scales the window to 96 x 96, and
:func:`core.envs.car_racing.preprocess_frames` crops the 12 HUD rows (window rows 700..800) and resizes the rest to
S x S. So a frame of side S shows 1000 / 16.2 = 61.7 world units across and 700 / 16.2 = 43.2 units from top to
bottom, the car 6.2 units above the bottom edge.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from core.envs.dream import BatchedDream

FPS = 50.0
"""CarRacing's steps per second: a step moves the car by speed / 50 world units and turns it by yaw rate / 50 rad."""
PX_PER_UNIT_WINDOW = 16.2
"""Window pixels per world unit (CarRacing's ``ZOOM * SCALE`` = 2.7 * 6.0 once the opening zoom is over)."""
VIEW_UNITS = (1000.0 / PX_PER_UNIT_WINDOW, 700.0 / PX_PER_UNIT_WINDOW)
"""World units across and down a preprocessed frame (the 1000-px window width; 700 px of height above the HUD)."""
CAR_ROW = 600.0 / 700.0
"""The car's row as a fraction of the preprocessed frame's height (window row 600 of the 700 kept)."""
CAR_BOX = ((0.44, 0.56), (0.77, 0.94))
"""A box around the car's sprite as fractions of the frame: columns, rows (the sprite measured on real 96 x 96 frames:
rows 76..87, columns 46..49, widened by a margin). It moves with the view, so it is never written to the map."""
CAR_SPRITE = ((0.47, 0.53), (0.79, 0.925))
"""The car's sprite with about 1 px of margin (columns, rows): where the dream shows M's frame (its car) even
where the map keeps ground."""
FEATHER_PX = 2.5 / 96.0
"""Width of the blend between the map's ground and M's frame, as a fraction of the frame's side (2-3 px): the map's
share falls from 1 to about one half across it, so its edge is no hard seam."""
CANVAS_UNITS = 240.0
"""Side of each dream's canvas in world units; it scrolls once the car comes within 51 units of an edge (a view
reaches 50 units from the car), forgetting what falls off the far side."""
EDGE_MARGIN = 0.2
"""Share of the frame's width (left, right) and height (top) along whose edges M's frame adds no guess to the map:
new ground enters the view there, and M's first drawings of it are its least sure; a place seen only there is not
kept when it leaves."""
GUESSES = 6.0
"""Weight of the running mean of M's drawings of a place: the last few count, older ones fade."""
PX_PER_UNIT = 2.5
"""Canvas resolution: finer than the view's finest axis (16.2 * 96 / 700 = 2.2 px per unit at S = 96)."""


class DreamMap:
    """World-fixed canvases of N dreams, and each dream's car pose.

    Args:
        n: number of dreams.
        size: side S of the frames (V's resolution: 64 for the ConvVAE, 96 for the DDS+VAE).

    The pose: position (N, 2) in world units, heading (N,) in rad, counter-clockwise positive (Box2D's sign, the sign
    of :func:`core.envs.car_racing.car_yaw_rate`), heading 0 facing +y. :meth:`reset` starts the car at (0, 0) facing
    +y (a pose relative to the dream's start), or at a given pose (Box2D's world frame, as the real car's).

    Raises:
        ValueError: ``n < 1`` or ``size < 8``.
    """

    def __init__(self, n: int, size: int) -> None:
        if n < 1 or size < 8:
            raise ValueError(f"need n >= 1 and size >= 8, got n={n}, size={size}")
        self.n, self.size = n, size
        self.side = int(round(CANVAS_UNITS * PX_PER_UNIT))
        # kept RGB in [0, 1], kept flag; M's drawings: RGB sum, count; in view at the last write
        self.pixels = torch.zeros(n, self.side, self.side, 9)
        self.canvas = self.pixels.permute(0, 3, 1, 2)  # the same memory as (N, 9, side, side), channels last
        self.origin = torch.zeros(n, 2)  # world position of the canvas centre
        self._last_pose: tuple[Tensor, Tensor] | None = None  # the pose at the last write
        self.position = torch.zeros(n, 2)
        self.heading = torch.zeros(n)
        w, h = VIEW_UNITS
        u = (torch.arange(size) + 0.5) / size  # pixel centres as fractions
        dx = (u - 0.5) * w  # world units right of the car
        dy = (CAR_ROW - u) * h  # world units ahead of the car
        self._view_dy, self._view_dx = torch.meshgrid(dy, dx, indexing="ij")  # (S, S) each
        self._car = _box(CAR_SPRITE, size)
        self._feather = 2 * math.ceil(FEATHER_PX * size) + 1  # the blend's window, px (odd): 7 at S = 96, 5 at 64
        reach = math.hypot(w / 2, CAR_ROW * h) + 2.0  # farthest a view pixel is from the car, world units
        self.patch = int(math.ceil(2 * reach * PX_PER_UNIT))

    def reset(self, frames: Tensor, position: Tensor | None = None, heading: Tensor | None = None) -> None:
        """Start every dream with an empty canvas centred on its car, at pose 0 or at ``position`` float (N, 2),
        world units, and ``heading`` (N,), rad (a :class:`core.envs.dream_car.DreamCars` pose), and write
        ``frames`` (N, 3, S, S) in [0, 1] to it."""
        self.canvas.zero_()
        self.position = torch.zeros(self.n, 2) if position is None else position.float().clone()
        self.heading = torch.zeros(self.n) if heading is None else heading.float().clone()
        self.origin = self.position.clone()
        self._last_pose = None
        self.write(frames)

    def repeat(self, n: int) -> DreamMap:
        """A new map of ``n`` dreams, each a copy of this one-dream map (canvas and pose): the dreams that start
        where it stands.

        Raises:
            ValueError: this map holds more than one dream.
        """
        if self.n != 1:
            raise ValueError(f"only a one-dream map can be repeated, this one has {self.n}")
        other = DreamMap(n, self.size)
        other.pixels.copy_(self.pixels.expand(n, -1, -1, -1))
        other.origin, other.position = self.origin.repeat(n, 1), self.position.repeat(n, 1)
        other.heading = self.heading.repeat(n)
        return other

    def place(self, position: Tensor, heading: Tensor) -> None:
        """Put each car at ``position`` float (N, 2), world units, facing ``heading`` (N,), rad: a pose that comes
        from elsewhere (a :class:`core.envs.dream_car.DreamCars`, or reality) instead of :meth:`advance`."""
        self.position, self.heading = position.float().clone(), heading.float().clone()
        self._scroll()

    def ground(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """What the map holds at ``points`` float (N, K, 2), world units: ``(colours, held)``, float32 (N, K, 3) in
        [0, 1] (what it kept, else the mean of M's guesses) and bool (N, K), False where it holds nothing."""
        grid = ((points - self.origin[:, None, :]) * (PX_PER_UNIT * 2.0 / self.side)).unsqueeze(1)  # (N, 1, K, 2)
        sampled = F.grid_sample(self.canvas, grid, mode="nearest", padding_mode="zeros", align_corners=False)[:, :, 0]
        kept = sampled[:, 3] > 0.5
        held = kept | (sampled[:, 7] > 0.0)
        mean = sampled[:, 4:7] / sampled[:, 7:8].clamp(min=1e-6)
        colours = torch.where(kept.unsqueeze(1), sampled[:, :3], mean)
        return colours.transpose(1, 2), held

    def advance(self, speed: Tensor, yaw: Tensor) -> None:
        """Move each car one step: heading += yaw / FPS, then position += speed / FPS along the heading.

        Args:
            speed: float32 (N,), world units per second, >= 0 (the car cannot reverse).
            yaw: float32 (N,), rad/s, counter-clockwise positive.
        """
        self.heading = self.heading + yaw / FPS
        forward = torch.stack([-torch.sin(self.heading), torch.cos(self.heading)], dim=1)
        self.position = self.position + (speed / FPS).unsqueeze(1) * forward
        self._scroll()

    def _view_world(self) -> Tensor:
        """World coordinates of every view pixel's centre: (N, S, S, 2)."""
        cos, sin = torch.cos(self.heading)[:, None, None], torch.sin(self.heading)[:, None, None]
        dx, dy = self._view_dx, self._view_dy
        x = self.position[:, 0, None, None] + dx * cos - dy * sin
        y = self.position[:, 1, None, None] + dx * sin + dy * cos
        return torch.stack([x, y], dim=-1)

    def render(self) -> tuple[Tensor, Tensor]:
        """The canvas seen from each car's pose: ``(frames, held)``, float32 (N, 3, S, S) in [0, 1] and bool (N, S, S).
        ``held`` is True where the map keeps ground (reality's, or M's that has left the view; never on the car's
        sprite, :data:`CAR_SPRITE`), and ``frames`` shows it there; elsewhere ``frames`` is 0."""
        world = self._view_world() - self.origin[:, None, None, :]
        grid = world * (PX_PER_UNIT * 2.0 / self.side)  # canvas pixels to grid_sample's [-1, 1]
        sampled = F.grid_sample(self.canvas[:, :4], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        held = (sampled[:, 3] > 0.999) & ~self._car  # all four neighbours kept: no blend with empty canvas
        return torch.where(held.unsqueeze(1), sampled[:, :3], 0.0), held

    def write(self, frames: Tensor, whole: bool = True) -> None:
        """Write ``frames`` (N, 3, S, S) in [0, 1], seen from each car's pose, to the map.

        ``whole`` (reality's frames): every pixel of the view is kept, over what the map held there. Else (a
        dream's, M's decoded frames): each empty place inside the view (all but the :data:`EDGE_MARGIN` bands) gets
        the frame as one more guess in a running mean (of at most :data:`GUESSES` guesses), and a place that has just
        left the view keeps that mean for good. So ground in view stays M's to redraw (a road that bends where the
        driver steers), and ground that comes back into view is what M drew before. What the map keeps is never
        resampled, so it does not blur.
        """
        lo, hi = (0.0, 1.0) if whole else (EDGE_MARGIN, 1.0 - EDGE_MARGIN)
        half, w, h = self.side / 2.0, *VIEW_UNITS
        # each car's box of canvas pixels around its view and its view at the last write (whose places may have just
        # left it), all boxes of one size: its corner, and every pixel's world offset from the car
        boxes = [self._view_box(self.position, self.heading)]
        if self._last_pose is not None:
            boxes.append(self._view_box(*self._last_pose))
        low = torch.stack([b[:, 0] for b in boxes]).amin(0).floor().long() - 1  # (N, 2): column, row
        high = torch.stack([b[:, 1] for b in boxes]).amax(0).ceil().long() + 1
        bw, bh = (int(x) for x in (high - low).amax(0))
        corner = torch.minimum(low.clamp(min=0), torch.tensor([self.side - bw, self.side - bh]))
        arange_c, arange_r = torch.arange(bw), torch.arange(bh)
        gx = (corner[:, 0, None] + arange_c + 0.5 - half) / PX_PER_UNIT + (self.origin - self.position)[:, 0, None]
        gy = (corner[:, 1, None] + arange_r + 0.5 - half) / PX_PER_UNIT + (self.origin - self.position)[:, 1, None]
        gx, gy = gx[:, None, :], gy[:, :, None]  # (N, 1, bw), (N, bh, 1)
        cos, sin = torch.cos(self.heading)[:, None, None], torch.sin(self.heading)[:, None, None]
        u = (gx * cos + gy * sin) / w + 0.5  # view fractions: across, down; (N, bh, bw)
        v = CAR_ROW - (-gx * sin + gy * cos) / h
        (cu0, cu1), (cv0, cv1) = CAR_BOX
        in_view = (u > 0) & (u < 1) & (v > 0) & (v < 1) & ~((u >= cu0) & (u <= cu1) & (v >= cv0) & (v <= cv1))
        rows, cols = corner[:, 1, None] + arange_r, corner[:, 0, None] + arange_c  # (N, bh), (N, bw)
        flat = self.pixels.view(-1, 9)  # one row per canvas pixel
        at = (torch.arange(self.n)[:, None, None] * self.side + rows[:, :, None]) * self.side + cols[:, None, :]
        live = self.pixels.view(-1).take(at * 9 + 8) > 0.5  # in view at the last write
        # work only on the places in view or in view before: gathered as (K, 9)
        sel = (in_view | live).view(-1).nonzero().squeeze(1)  # (K,) into the N patches, flattened
        index = at.view(-1).index_select(0, sel)
        cell = flat.index_select(0, index)
        uk, vk = u.reshape(-1).index_select(0, sel), v.reshape(-1).index_select(0, sel)
        seen_now = in_view.view(-1).index_select(0, sel)
        inner = seen_now & (uk > lo) & (uk < hi) & (vk > 1.0 - hi)
        seen = _bilinear(frames, sel // (bh * bw), uk, vk)  # (K, 3)
        if whole:  # reality: the latest view is the truest (a pose read from the HUD drifts)
            keep = inner
            cell[:, :3] = torch.where(keep[:, None], seen, cell[:, :3])
            cell[:, 4:9] = torch.where(keep[:, None], 0.0, cell[:, 4:9])
        else:
            empty = cell[:, 3] < 0.5
            guess = inner & empty
            total = torch.where(guess[:, None], cell[:, 4:7] + seen, cell[:, 4:7])
            count = torch.where(guess, cell[:, 7] + 1.0, cell[:, 7])
            scale = torch.where(count > GUESSES, GUESSES / count.clamp(min=1.0), torch.ones_like(count))
            cell[:, 4:7], cell[:, 7] = total * scale[:, None], count * scale  # at most GUESSES guesses weigh
            keep = (cell[:, 8] > 0.5) & ~seen_now & empty & (cell[:, 7] > 0.0)  # M's ground that just left the view
            cell[:, :3] = torch.where(keep[:, None], cell[:, 4:7] / cell[:, 7:8].clamp(min=1e-6), cell[:, :3])
            cell[:, 8] = (seen_now & empty).float()
        cell[:, 3] = torch.where(keep, 1.0, cell[:, 3])
        flat.index_copy_(0, index, cell)
        self._last_pose = (self.position.clone(), self.heading.clone())

    def _view_box(self, position: Tensor, heading: Tensor) -> Tensor:
        """The canvas pixels (columns, rows) bounding each view from ``position`` (N, 2) and ``heading`` (N,):
        float (N, 2, 2), [min, max] x [column, row]."""
        w, h = VIEW_UNITS
        dx = torch.tensor([-w / 2, w / 2, -w / 2, w / 2])
        dy = torch.tensor([CAR_ROW * h, CAR_ROW * h, (CAR_ROW - 1) * h, (CAR_ROW - 1) * h])
        cos, sin = torch.cos(heading)[:, None], torch.sin(heading)[:, None]
        x = position[:, 0, None] + dx * cos - dy * sin - self.origin[:, 0, None]
        y = position[:, 1, None] + dx * sin + dy * cos - self.origin[:, 1, None]
        corners = torch.stack([x, y], dim=-1) * PX_PER_UNIT + self.side / 2.0  # (N, 4, 2)
        return torch.stack([corners.amin(1), corners.amax(1)], dim=1)

    def composite(self, frames: Tensor) -> Tensor:
        """Add M's decoded ``frames`` (N, 3, S, S) in [0, 1] to the map as guesses (:meth:`write`), then return what
        the map shows from each pose, with M's frame wherever it holds nothing: (N, 3, S, S), the frame the dream
        shows and V encodes."""
        self.write(frames, whole=False)
        shown, held = self.render()
        weight = self.weight(held)
        return frames + weight * (shown - frames)

    def weight(self, held: Tensor) -> Tensor:
        """The map's share of each shown pixel, float32 (N, 1, S, S) in [0, 1], from :meth:`render`'s ``held`` (N, S,
        S): 1 inside the ground the map keeps, falling to about one half at its edge over :data:`FEATHER_PX`, and 0
        where it keeps none (a feathered edge: no hard seam between reality's crisp ground and M's frame)."""
        k = self._feather
        hollow = F.avg_pool2d((~held).float().unsqueeze(1), k, stride=1, padding=k // 2, count_include_pad=False)
        return held.unsqueeze(1) * (1.0 - hollow)

    def _scroll(self) -> None:
        """Recentre a canvas on its car by whole canvas pixels (so what it holds is not resampled) once the car is
        within a view's reach of its edge; what scrolls off is forgotten."""
        limit = (self.side - self.patch) / 2.0 / PX_PER_UNIT - 1.0
        offset = self.position - self.origin
        for i in torch.nonzero((offset.abs() > limit).any(dim=1)).flatten().tolist():
            shift = torch.round(offset[i] * PX_PER_UNIT).long()  # canvas pixels: columns, rows
            sc, sr = int(shift[0]), int(shift[1])
            moved = torch.zeros_like(self.pixels[i])
            s = self.side
            src_r, dst_r = slice(max(sr, 0), s + min(sr, 0)), slice(max(-sr, 0), s + min(-sr, 0))
            src_c, dst_c = slice(max(sc, 0), s + min(sc, 0)), slice(max(-sc, 0), s + min(-sc, 0))
            moved[dst_r, dst_c] = self.pixels[i, src_r, src_c]
            self.pixels[i] = moved
            self.origin[i] = self.origin[i] + shift.float() / PX_PER_UNIT


def _box(box: tuple[tuple[float, float], tuple[float, float]], size: int) -> Tensor:
    """The pixels of a box (columns, rows as fractions of the frame) in a frame of side ``size``: bool (S, S)."""
    (c0, c1), (r0, r1) = box
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[int(r0 * size) : math.ceil(r1 * size), int(c0 * size) : math.ceil(c1 * size)] = True
    return mask


def dream_with_map(
    vision: Any, dream: BatchedDream, dream_map: DreamMap, speed: Tensor | None = None, yaw: Tensor | None = None
) -> Tensor:
    """After ``dream.step``: move each map's car by the dream's own speed and yaw rate, lay the map over V's decoding
    of the dreamed z, and put V's encoding of the composite (its mean) back as the dream's z, the z M reads next
    (:func:`ground_z`).

    Args:
        vision: V (``encode`` float (N, 3, S, S) in [0, 1] -> (mu, logvar); ``decode`` z -> frames).
        dream: N dreams of an M that reads the speed and the yaw rate, just stepped.
        dream_map: the N dreams' map.
        speed, yaw: float32 (N,), world units per second and rad/s: move the map's cars by these instead (reality's
            HUD readings, to measure the map with the car's true motion; then M need not read them).

    Returns:
        The frames the dreams show, float32 (N, 3, S, S) in [0, 1].

    Raises:
        ValueError: no ``speed`` and ``yaw`` given, and the dream's M does not read the yaw rate (its car would
            never turn on the map).
    """
    if speed is None or yaw is None:
        if not dream.yaw_input:
            raise ValueError("the dream's map needs an M that reads the yaw rate (train-memory --yaw-input)")
        speed, yaw = dream.speed, dream.yaw
    dream_map.advance(speed, yaw)
    decoded = vision.decode(dream.z)
    frames = dream_map.composite(decoded)
    ground_z(vision, dream, frames, decoded)
    return frames


def ground_z(vision: Any, dream: BatchedDream, frames: Tensor, decoded: Tensor) -> None:
    """Put V's encoding (its mean) of the ``frames`` float (N, 3, S, S) the dreams show back as their z, for the
    live dreams whose shown frame differs from V's ``decoded`` z (N, 3, S, S) at all: where the map adds nothing, z
    stays M's own (and V's encode is spared).

    Even a sliver of difference (ground at the view's edge, about 2% of the pixels driving straight on) is re-encoded:
    V's encoding of what V decoded keeps z among the latents V makes. Re-encoding only where the map changed the
    frame by more than 1e-3 on average let M's z drift: 3.8% of the DDS+VAE's dreamed latents beyond every real one
    on agent episodes, none at every step (docs/history.md, session 38).
    """
    redo = (frames != decoded).flatten(1).any(1) & dream.stepped  # the dreams the last step advanced
    if bool(redo.any()):
        index = redo.nonzero().squeeze(1)
        z = dream.z.clone()
        z[index] = vision.encode(frames[index])[0]
        dream.z = z


def map_reality(
    dream_map: DreamMap,
    frames: Tensor,
    speed: Tensor,
    yaw: Tensor,
    starts: Tensor,
    history: int,
    first: int = 0,
    poses: tuple[Tensor, Tensor] | None = None,
) -> None:
    """Start each map with reality's past: the frames of the ``history`` steps before its dream's start (from
    ``first`` on), carried by reality's speed and yaw rate, each written over the last, so the map ends at the start
    frame's pose with the start frame on top.

    Args:
        dream_map: N maps (reset here).
        frames: float32 (T, 3, S, S) in [0, 1], one episode's frames as the model sees them (V's reconstructions).
        speed, yaw: float32 (T,), the episode's HUD readings (world units per second, rad/s).
        starts: int64 (N,), each dream's start step (< T).
        history: steps of the past to write (0: the start frame alone).
        first: no frame before this step is written (the opening zoom of an episode has another scale).
        poses: the real car's pose at every step, float32 (T, 2) world units and (T,) rad (Box2D's frame, see
            :class:`core.envs.dream_car.DreamCars`): the frames are placed there instead (speed and yaw unused).
    """
    begin = (starts - history).clamp(min=first).clamp(max=starts)
    dream_map.reset(frames[begin], *((poses[0][begin], poses[1][begin]) if poses is not None else (None, None)))
    for j in range(1, history + 1):
        t = (begin + j).clamp(max=starts)
        if poses is not None:
            dream_map.place(poses[0][t], poses[1][t])
        else:
            moving = begin + j <= starts
            dream_map.advance(torch.where(moving, speed[t], 0.0), torch.where(moving, yaw[t], 0.0))
        dream_map.write(frames[t], whole=True)


def _bilinear(frames: Tensor, dream: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``frames`` float (N, 3, S, S) sampled at view fractions ``u`` (across) and ``v`` (down), float (K,), of the
    frames ``dream`` int64 (K,): float (K, 3), bilinear between pixel centres and clamped to the border (as
    ``grid_sample(align_corners=False, padding_mode="border")``)."""
    size = frames.shape[-1]
    pixels = frames.permute(0, 2, 3, 1).reshape(-1, 3).contiguous()  # one row per pixel
    base = dream * size * size
    x = (u * size - 0.5).clamp(0, size - 1)
    y = (v * size - 0.5).clamp(0, size - 1)
    x0, y0 = x.floor().long(), y.floor().long()
    x1, y1 = (x0 + 1).clamp(max=size - 1), (y0 + 1).clamp(max=size - 1)
    fx, fy = (x - x0).unsqueeze(1), (y - y0).unsqueeze(1)

    def at(y: Tensor, x: Tensor) -> Tensor:
        return pixels.index_select(0, base + y * size + x)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    return top * (1 - fy) + bottom * fy
