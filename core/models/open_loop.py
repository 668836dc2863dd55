"""The MDN-RNN's open-loop (dream) loss: M scored on its own samples fed back for several steps.

Teacher forcing (:meth:`core.models.mdnrnn.MDNRNN.loss`) shows M only real inputs; this loss trains it on the
dream it is used for (``train-memory --open-loop-steps``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.models.mdn import sample_mdn_with_noise
from core.models.mdnrnn import MDNRNN, MDNOutput


def open_loop_loss(
    model: MDNRNN, batch: dict[str, Tensor], start: int, steps: int, generator: torch.Generator | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Loss of a dream: M reads the real z_0..z_start, then feeds itself its own samples for ``steps`` steps
    (with the real actions) and is scored on the real z, reward and done along the way.

    The dream is what M is used for (split mode, dream training of C), and a model trained only with the
    real z as input (teacher forcing) has never seen its own errors, so they compound (Bengio et al., 2015,
    "Scheduled Sampling"; Hafner et al., 2019, "PlaNet", sec. 4, latent overshooting, for the multi-step
    objective). Samples are drawn as in :func:`sample_mdn_with_noise` at tau = 1 and reparameterised
    (``mu_k + sigma_k * eps``, the component index carries no gradient), so the loss at step k reaches the
    predictions of steps < k through the fed-back z (back-propagation through the dream).

    Args:
        model: the M trained (its weights get the gradient).
        batch: as :meth:`MDNRNN.loss`; needs T >= start + steps.
        start: real inputs read before the dream (z_0..z_start), >= 0.
        steps: dream steps scored, >= 1; the targets are z_{start+2}..z_{start+steps+1}, the first dreamed
            input is M's sample of z_{start+1}.
        generator: torch RNG of the dream's noise.

    Returns:
        ``(loss, metrics)`` like :meth:`MDNRNN.loss`, metrics named ``open_loop_nll``, ``open_loop_reward_mse``,
        ``open_loop_done_bce``.

    Raises:
        ValueError: the window is shorter than ``start + steps + 1`` steps, or ``steps`` < 1.
    """
    z, action = batch["z"], batch["action"]
    horizon = action.shape[1]
    if steps < 1 or start < 0 or start + steps + 1 > horizon:
        raise ValueError(f"open-loop dream of {steps} steps from step {start} does not fit a {horizon}-step window")
    target = batch["z_target"] if "z_target" in batch else z[:, 1:]
    mask = batch.get("mask")
    if mask is None:
        mask = torch.ones(target.shape[:2], device=z.device)
    speed_in = batch.get("speed_in") if model.config.speed_input else None
    yaw_in = batch.get("yaw_in") if model.config.yaw_input else None
    head = slice(None, start + 1)
    out, state = model(
        z[:, head], action[:, head], None, None if speed_in is None else speed_in[:, head],
        None if yaw_in is None else yaw_in[:, head],
    )  # fmt: skip
    last = MDNOutput(*(t[:, -1] for t in out))
    car = None  # with speed_input the dream runs on its own car state: c_{t+1} = c_t + the head's change (clamped)
    if speed_in is not None:
        yaw_start = None if yaw_in is None else yaw_in[:, start]
        car = model.next_car(state[0][0], speed_in[:, start], action[:, start], z[:, start], yaw_start)
    preds, hs, ins, yaws, zs = [], [], [], [], []
    for t in range(start + 1, start + steps + 1):
        noise = torch.randn((*last.mu.shape[:-1], 2), generator=generator, dtype=z.dtype, device=z.device)
        z_t = sample_mdn_with_noise(
            last.log_pi, last.mu, last.log_sigma, 1.0, noise, model.config.joint
        )  # index: no grad
        s_t, yaw_t = (None, None) if car is None else car
        last, state = model.step(z_t, action[:, t], state, s_t, yaw_t)
        preds.append(last)
        hs.append(state[0][0])
        if s_t is not None:
            ins.append(s_t)
            zs.append(z_t)
            if yaw_t is not None:
                yaws.append(yaw_t)
            car = model.next_car(state[0][0], s_t, action[:, t], z_t, yaw_t)
    dream = MDNOutput(*(torch.stack(field, dim=1) for field in zip(*preds, strict=True)))
    sl = slice(start + 1, start + steps + 1)
    part = {"reward": batch["reward"][:, sl], "done": batch["done"][:, sl]}
    nll, reward_mse, done_bce = model.step_losses(dream, part, target[:, sl], mask[:, sl])
    loss = nll + model.config.reward_weight * reward_mse + model.config.done_weight * done_bce
    metrics = {
        "open_loop_nll": nll.item(), "open_loop_reward_mse": reward_mse.item(), "open_loop_done_bce": done_bce.item()
    }  # fmt: skip
    car_mse = model.car_mse(
        torch.stack(hs, dim=1), batch, sl, mask[:, sl], torch.stack(ins, 1) if ins else None,
        torch.stack(zs, 1) if zs else None, torch.stack(yaws, 1) if yaws else None,
    )  # fmt: skip
    return model.with_car_loss(loss, metrics, car_mse, "open_loop_")
