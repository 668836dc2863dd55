"""How much an ensemble of MDN-RNNs disagrees about the next latent along a dream: an uncertainty penalty.

A controller trained in a dream finds the actions where M is wrong and pays (session 26's dream-only controllers
in an ensemble steered full right with the brake on, which reality does not pay). Where the data never showed a
state and action, members trained on other data or seeds predict different futures; where it did, they agree.
Model-based offline RL penalises the dream's reward by that disagreement: MOPO (Yu et al., 2020, eq. 7:
``r~ = r - lambda u(s, a)``, u the ensemble's spread) and MOReL (Kidambi et al., 2020, a halt where the spread
passes a threshold). :class:`EnsembleDisagreement` runs every member's LSTM along a dream on the dream's own z,
actions and speed, and gives per step the spread of their predicted next-z means.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from core.envs.dream import ACTION_HIGH, ACTION_LOW
from core.models.mdn import mixture_mean
from core.models.mdnrnn import MDNRNN, LSTMState

_LOW, _HIGH = torch.from_numpy(ACTION_LOW), torch.from_numpy(ACTION_HIGH)


class EnsembleDisagreement:
    """The members' LSTMs run along N dreams; :meth:`step` returns their disagreement about z_{t+1}.

    The disagreement of row i at step t is ``sqrt(mean_d var_k mu_k[i, d])``: the standard deviation across the
    K members of their mixture means ``E[z_{t+1} | h_k]`` (:func:`core.models.mdn.mixture_mean`), root mean square
    over the z dimensions; in units of z (standard normal under V's prior), float32 (N,), >= 0.

    Args:
        members: K >= 2 MDN-RNNs of the same sizes, all reading the speed or none.
        states: each member's LSTM state at the dreams' start, ``(h, c)`` each float32 (1, N, hidden_dim).

    Raises:
        ValueError: fewer than 2 members, members of other sizes, or some reading the speed (yaw rate) and some not.
    """

    def __init__(self, members: Sequence[MDNRNN], states: Sequence[LSTMState]) -> None:
        if len(members) < 2:
            raise ValueError(f"a disagreement needs at least 2 members, got {len(members)}")
        first = members[0].config
        for m in members[1:]:
            c = m.config
            if (c.z_dim, c.hidden_dim, c.speed_input, c.yaw_input) != (
                first.z_dim, first.hidden_dim, first.speed_input, first.yaw_input
            ):  # fmt: skip
                raise ValueError("ensemble members differ in z_dim, hidden_dim or whether they read the speed or yaw")
        if len(states) != len(members):
            raise ValueError(f"{len(members)} members but {len(states)} start states")
        self.members = [m.eval() for m in members]
        self.states: list[LSTMState] = [(h.clone(), c.clone()) for h, c in states]
        self.speed_input, self.yaw_input = first.speed_input, first.yaw_input

    @torch.no_grad()
    def step(
        self, z: Tensor, action: Tensor, speed: Tensor | None = None, live: Tensor | None = None,
        yaw: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Advance every member on ``(z_t, a_t, s_t)`` and return the spread of their predicted z_{t+1} means.

        Args:
            z: float32 (N, z_dim), the dream's z_t. action: float32 (N, 3), clipped to CarRacing's action box here.
            speed: float32 (N,) the dream's s_t (world units per second), needed when the members read the speed.
            live: bool (N,): rows still dreaming (others keep their state and get 0); default all.
            yaw: float32 (N,) the dream's yaw rate (rad/s), needed when the members read it.

        Returns:
            float32 (N,), the disagreement (see the class doc).

        Raises:
            ValueError: the members read the speed (yaw rate) and ``speed`` (``yaw``) is None.
        """
        if (self.speed_input and speed is None) or (self.yaw_input and yaw is None):
            raise ValueError("these members read the car's speed and yaw rate: pass the dream's")
        a = action.float().clamp(min=_LOW, max=_HIGH)
        means = []
        for i, member in enumerate(self.members):
            out, (h, c) = member.step(
                z, a, self.states[i], speed if self.speed_input else None, yaw if self.yaw_input else None
            )
            if live is not None:
                keep = live.view(1, -1, 1)
                h, c = torch.where(keep, h, self.states[i][0]), torch.where(keep, c, self.states[i][1])
            self.states[i] = (h, c)
            means.append(mixture_mean(out.log_pi, out.mu))
        spread = torch.stack(means).var(dim=0, unbiased=False).mean(dim=1).sqrt()
        return spread if live is None else torch.where(live, spread, torch.zeros_like(spread))
