"""Road share: the fraction of a frame's pixels that show CarRacing's grey road.

CarRacing-v3 draws the road in grey (RGB about (102, 102, 102) to (107, 107, 107) out of 255, i.e. 0.40-0.42),
the grass in green ((102, 204, 102) and (102, 229, 102)), the kerbs in red and white, the car in red, and the
void off the map in black. A pixel counts as road when it is grey (its channels differ by at most
``ROAD_MAX_CHROMA``) and of middle brightness (mean in ``ROAD_BRIGHTNESS``). The test is the same for real
frames and for a vision model's decoded ones, so dream and reality are compared on equal terms; a decoder's
blur at the road's edge turns some pixels green-grey, which is why V's own reconstruction sits slightly below
the real frame (report it as the floor).
"""

from __future__ import annotations

import torch
from torch import Tensor

ROAD_MAX_CHROMA = 0.1
"""Largest difference between a road pixel's channels (values in [0, 1]); grass differs by about 0.4."""
ROAD_BRIGHTNESS = (0.28, 0.56)
"""Range of a road pixel's channel mean (values in [0, 1]); the road is about 0.40-0.42."""
KEEP_TOLERANCE = 0.5
"""A dream *tracks* reality's road when its share is within this fraction of reality's (+-50%)."""
KEEP_FLOOR = 0.02
"""... or within this absolute share, so an off-road reality (share ~0) is tracked by an off-road dream."""


def road_mask(frames: Tensor) -> Tensor:
    """Road pixels of frames float (N, 3, H, W) in [0, 1] -> bool (N, H, W)."""
    hi, lo = frames.amax(dim=1), frames.amin(dim=1)
    mean = frames.mean(dim=1)
    return (hi - lo <= ROAD_MAX_CHROMA) & (mean >= ROAD_BRIGHTNESS[0]) & (mean <= ROAD_BRIGHTNESS[1])


def road_share(frames: Tensor) -> Tensor:
    """Share of road pixels per frame: float (N, 3, H, W) in [0, 1] -> float32 (N,) in [0, 1]."""
    return road_mask(frames).flatten(1).float().mean(dim=1)


def tracks_road(dream_share: Tensor, real_share: Tensor) -> Tensor:
    """Whether each dream's road share is within +-50% of reality's (or within 0.02 of it): bool (N,).

    Both arguments float (N,) in [0, 1]. This is the issue's "dream keeps the road when reality does and leaves it
    when reality does": a dream that always draws road fails where reality is off the road, and vice versa.
    """
    return (dream_share - real_share).abs() <= torch.maximum(
        KEEP_TOLERANCE * real_share, torch.full_like(real_share, KEEP_FLOOR)
    )


ROAD_OFFSET_ROWS = (0.31, 0.78)
"""Rows of the frame (as fractions of its height) whose road pixels locate the road: from the view ahead down to
the car (at 64x64 rows 20-49; the car sits at about row 46 on CarRacing's zoomed view)."""


def road_offset(frames: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal position of the road relative to the frame's centre line, where the car is.

    Args:
        frames: float (N, 3, H, W) in [0, 1].

    Returns:
        ``(offset, has_road)``: float32 (N,) mean column of the road pixels in rows ``ROAD_OFFSET_ROWS``
        minus the centre column, in pixels (negative: the road lies to the car's left); bool (N,) whether those
        rows hold any road pixel (the offset is 0 where not).
    """
    h, w = frames.shape[-2:]
    r0, r1 = int(ROAD_OFFSET_ROWS[0] * h), int(ROAD_OFFSET_ROWS[1] * h)
    mask = road_mask(frames)[:, r0:r1].float()
    per_column = mask.sum(dim=1)
    count = per_column.sum(dim=1)
    columns = torch.arange(w, dtype=torch.float32, device=frames.device)
    mean_col = (per_column * columns).sum(dim=1) / count.clamp(min=1.0)
    has_road = count > 0
    return torch.where(has_road, mean_col - (w - 1) / 2.0, torch.zeros_like(mean_col)), has_road
