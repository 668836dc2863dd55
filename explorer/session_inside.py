"""Seeing inside the session's models: V's reconstruction and its error, the DDS mask views, and the latent z
edited by hand (a part of :class:`explorer.session.Session`). Each view is computed when a panel asks for it
and cached per step.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.api import (
    to_uint8_hwc,
)
from core.models import DDSVAE
from explorer.session_parts import SessionParts
from explorer.session_state import (
    FRAME_BUDGET,
    MASK_PERIOD,
    RECON_PERIOD,
    RECON_SHARE,
    MaskViews,
    Reconstruction,
    heat_map,
)

log = logging.getLogger("explorer")


class InsideViews(SessionParts):
    """The "inside" views of a :class:`explorer.session.Session`. Mixed into Session; its state is set in
    ``Session.__init__``."""

    # ------------------------------------------------------------------------------------------------
    # seeing inside
    # ------------------------------------------------------------------------------------------------
    def reconstruction(self) -> Reconstruction | None:
        """V's reconstruction of the current real frame and its error (None without V).

        Refreshed at most every RECON_PERIOD seconds, and less often when the decode is slow (it then takes at
        most RECON_SHARE of the time): a decode per frame only for this picture would cost the DDS+VAE ~30 ms.
        In split mode with ``_batched_reconstruction``, the refresh comes with the dream's decode, in one batch.
        """
        if self.world_model is None or self._real_x is None or self._real_z is None:
            return None
        now = time.monotonic()
        cached = self._cache.get("recon")
        batched = self._batched_reconstruction and self.mode == "split" and self.dream is not None
        if cached is not None and (batched or not self._recon_due(now)):
            return cached[1]  # in split mode it comes with the next dream decode
        assert self.vision_runtime is not None
        with self._inference("recon", vision=True):
            out = self.vision_runtime.decode(self._real_z)
        self._recon_seconds = time.monotonic() - now
        return self._make_reconstruction(out, now)

    @property
    def _batched_reconstruction(self) -> bool:
        """The reconstruction is decoded with the dream: the Vision panel is on screen and V runs on oneDNN (there
        a batch of 2 costs the DDS+VAE 1.6 single decodes; the ConvVAE's native batch of 2 costs 3.4), and the
        dream does not step on its own thread (there it is decoded before the real frame is encoded)."""
        return self.wants_reconstruction and self.vision_onednn and not self._parallel_step

    def _recon_due(self, now: float) -> bool:
        """The reconstruction shown is of an older real frame and old enough to be refreshed."""
        cached = self._cache.get("recon")
        if cached is None:
            return True
        (version, when), _ = cached
        period = max(RECON_PERIOD, self._recon_seconds / RECON_SHARE)
        return version != self.real_version and now - when >= period

    def _make_reconstruction(self, out: Tensor, now: float) -> Reconstruction:
        """The Reconstruction of the current real frame from ``out`` = decode(mu), float32 (1, 3, S, S); cached."""
        assert self._real_x is not None
        x = self._real_x
        err = (out - x).abs().mean(1)[0].numpy()
        max_error = 0.25
        recon = Reconstruction(
            input=to_uint8_hwc(x)[0],
            output=to_uint8_hwc(out)[0],
            error=heat_map(err, max_error),
            mse=float((out - x).pow(2).mean()),
            max_error=max_error,
        )
        self._cache["recon"] = ((self.real_version, now), recon)
        self.recon_version += 1
        return recon

    def mask_views(self) -> MaskViews | None:
        """The DDS mask, gated input and mini mask of the current real frame (None unless V is a DDS+VAE)."""
        if not self.has_mask or self._real_x is None:
            return None
        cached = self._cache.get("mask")
        now = time.monotonic()
        if cached is not None:
            version, when = cached[0]
            slow = self.clock.last_frame > FRAME_BUDGET
            if version == self.real_version or (slow and now - when < MASK_PERIOD):
                return cached[1]
        selected = self._real_mask
        if selected is None:
            with self._inference("encode", vision=True):
                assert isinstance(self.vision, DDSVAE)  # mask views exist only for the DDS+VAE
                selected = self.vision.mask(self._real_x)
        with self.clock.stage("mask"):
            views = self._make_mask_views(selected)
        self._cache["mask"] = ((self.real_version, now), views)
        self.mask_version += 1
        return views

    @staticmethod
    def _make_mask_views(selected: Any) -> MaskViews:
        """The views of a DDS+VAE selection (``mask``, ``gated``, ``mini_mask`` tensors of batch 1)."""
        mini = selected.mini_mask[0]  # (4, 16, 16) -> a 2x2 grid (32, 32), grey
        grid = torch.cat([torch.cat([mini[0], mini[1]], 1), torch.cat([mini[2], mini[3]], 1)], 0)
        tiles = grid.unsqueeze(0).expand(3, -1, -1)
        views = MaskViews(
            mask=to_uint8_hwc(selected.mask[0]),
            gated=to_uint8_hwc((selected.gated[0] * 4.0).clamp(0, 1)),
            mini_mask=to_uint8_hwc(tiles),
            kept=float(selected.mask[0].mean()),
        )
        return views

    def latent(self) -> np.ndarray | None:
        """The z the latent panel shows live: the dream's in dream mode, else reality's."""
        return self.dream_z if self.mode == "dream" else self.real_z

    def edit_latent(self, index: int, value: float) -> None:
        """Set one dimension of the edited latent (starting from the live z at the first edit)."""
        if self.z_edit is None:
            live = self.latent()
            if live is None:
                return
            self.z_edit = live.copy()
        self.z_edit[index] = value
        self.edit_version += 1

    def stop_editing(self) -> None:
        """Forget the edited latent; the panel follows the live z again."""
        self.z_edit = None
        self.edit_version += 1

    def edited_frame(self) -> np.ndarray | None:
        """decode(z_edit), uint8 (S, S, 3), or None when not editing."""
        if self.z_edit is None or self.world_model is None:
            return None
        cached = self._cache.get("edit")
        if cached is not None and cached[0] == self.edit_version:
            return cached[1]
        with self._inference("decode", vision=True):
            frame = self.world_model.decode_uint8(torch.from_numpy(self.z_edit).view(1, -1))[0]
        self._cache["edit"] = (self.edit_version, frame)
        return frame
