"""The mean-frame baseline of a pixel error: one fixed frame, the average of the other episodes' real frames.

A dream's pixel MSE against reality is read beside baselines. Standing still (the start frame at every horizon)
is one; this module gives the other: a "dream" that shows one fixed, blurred frame, the pixel-wise average of the
real frames of every *other* episode of the set (of the one episode itself when the set holds one), whatever the
car does. It knows nothing of the window, so a dream that does not beat it has not shown where the road is.

On CarRacing the average frame is grass with a grey smear up the middle. A sharp road drawn a few pixels aside
costs the MSE twice (road where reality has grass and grass where it has road), so a sharp dream can stand behind
this blur while holding a road that a driver can follow; report both baselines.

The sum over compared frames r of ``mean((m - r)^2)`` is ``n mean(m^2) - 2 mean(m * R) + sum mean(r^2)`` with
``R = sum r``, so only sums are kept, not frames.
"""

from __future__ import annotations

import torch
from torch import Tensor


class MeanFrameBaseline:
    """Accumulates, per horizon, the pixel MSE of the other episodes' mean real frame against compared frames.

    Call :meth:`episode` with each episode's frames, then :meth:`add` with the real frames compared at each
    horizon of that episode; :meth:`sums` gives the totals once every episode is in.
    """

    def __init__(self) -> None:
        self._frame_sums: list[Tensor] = []  # per episode: sum of its frames, float64 (3, H, W)
        self._frame_counts: list[int] = []
        self._compared: list[dict[int, tuple[Tensor, float, int]]] = []  # per episode and horizon: R, sum mean r^2, n

    def episode(self, frames: Tensor) -> None:
        """Start an episode: frames float (T, 3, H, W) in [0, 1], all of its real frames at V's resolution."""
        self._frame_sums.append(frames.sum(0, dtype=torch.float64))
        self._frame_counts.append(len(frames))
        self._compared.append({})

    def add(self, horizon: int, frames: Tensor) -> None:
        """Real frames float (N, 3, H, W) in [0, 1] compared at ``horizon`` in the current episode.

        Raises:
            ValueError: no :meth:`episode` yet, or frames of another shape than the episode's.
        """
        if not self._compared:
            raise ValueError("MeanFrameBaseline.add before any episode")
        if frames.shape[1:] != self._frame_sums[-1].shape:
            raise ValueError(f"frames {tuple(frames.shape[1:])} differ from the episode's {self._frame_sums[-1].shape}")
        r, q, n = self._compared[-1].get(horizon, (torch.zeros_like(self._frame_sums[-1]), 0.0, 0))
        f = frames.double()
        self._compared[-1][horizon] = (r + f.sum(0), q + float(f.pow(2).flatten(1).mean(1).sum()), n + len(f))

    def sums(self) -> dict[int, tuple[float, int]]:
        """Per horizon: (sum over compared frames of the mean frame's pixel MSE, number of compared frames)."""
        total, count = torch.stack(self._frame_sums).sum(0), sum(self._frame_counts)
        out: dict[int, tuple[float, int]] = {}
        for e, compared in enumerate(self._compared):
            others = count - self._frame_counts[e]
            mean = (total - self._frame_sums[e]) / others if others else total / count
            for k, (r, q, n) in compared.items():
                value = n * float(mean.pow(2).mean()) - 2.0 * float((mean * r).mean()) + q
                old = out.get(k, (0.0, 0))
                out[k] = (old[0] + value, old[1] + n)
        return out
