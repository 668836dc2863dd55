"""Reality replayed on a recorded episode's track: the real counterpart of a dream started mid-episode.

CarRacing-v3 is deterministic given its track seed and the actions, so replaying an episode's recorded actions
up to step ``start`` puts the real car where the episode had it; the functions here then drive on with other
actions (held steering, no gas, full brake, a nudge) and report what reality shows or pays. A replay that does
not reproduce the recorded rewards (another gymnasium or Box2D version) yields None instead of a wrong figure.
Used by :mod:`core.divergence`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


@contextmanager
def replayed(ep, start: int, before_step: Callable[[int, Any], None] | None = None) -> Iterator[Any]:
    """The real env on ``ep``'s track after its recorded actions up to ``start``, or None when the replay does
    not reproduce the recorded rewards (another env version) or the episode ends first. ``before_step(t, env)`` is
    called before each recorded action t < ``start`` is applied."""
    from core.envs.car_racing import make_real_env

    env = make_real_env()
    try:
        env.reset(seed=int(ep.seed))
        total, ended = 0.0, False
        for t in range(start):
            if before_step is not None:
                before_step(t, env)
            _, r, ended, _, _ = env.step(np.asarray(ep.actions[t], np.float32))
            total += float(r)
            if ended:
                break
        reproduced = abs(total - float(np.sum(ep.rewards[:start]))) <= 1e-3 * max(1.0, abs(total))
        yield env if reproduced and not ended else None
    finally:
        env.close()


def real_frames_after(ep, start: int, actions: np.ndarray, horizons: tuple[int, ...]) -> np.ndarray | None:
    """Reality's frames uint8 (len(horizons), 96, 96, 3) after ``k`` of ``actions`` float32 (K, 3) for each ``k``
    in ``horizons``, from ``ep``'s track replayed up to ``start``; None when the replay fails (see
    :func:`replayed`) or the episode ends first."""
    with replayed(ep, start) as env:
        if env is None:
            return None
        frames = []
        for k, action in enumerate(actions, start=1):
            obs, _, term, _, _ = env.step(np.asarray(action, np.float32))
            if term:
                return None
            if k in horizons:
                frames.append(obs)
        return np.stack(frames)


def real_drive(ep, start: int, actions: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Reality's return over ``actions`` float32 (K, 3) after replaying ``ep`` up to ``start`` (until the episode
    ends, if sooner) and its last frame uint8 (96, 96, 3); None when the replay fails (see :func:`replayed`) or
    ``actions`` is empty."""
    with replayed(ep, start) as env:
        if env is None:
            return None
        total, obs = 0.0, None
        for action in actions:
            obs, r, term, _, _ = env.step(np.asarray(action, np.float32))
            total += float(r)
            if term:
                break
        return None if obs is None else (total, obs)


def car_states(
    ep, steps: set[int], visited: dict[int, Any] | None = None, visited_steps: set[int] | None = None
) -> dict[int, Any] | None:
    """The real car's full state (:class:`core.envs.dream_car.CarState`) at each step in ``steps`` of ``ep``'s
    replay (step t: after t recorded actions, when frame t is shown), or None when the replay does not reproduce
    the recorded rewards up to the last of them (see :func:`replayed`) or the episode ends first. With ``visited``,
    also fills it with the centres of the tiles touched by then (:func:`core.envs.dream_car.visited_road`) at each
    step of ``visited_steps`` (default: ``steps``) that is also in ``steps``."""
    from core.envs.dream_car import car_state, visited_road

    states = {}
    visit = steps if visited_steps is None else visited_steps

    def keep(t: int, env: Any) -> None:
        if t in steps:
            states[t] = car_state(env)
            if visited is not None and t in visit:
                visited[t] = visited_road(env)

    last = max(steps)
    with replayed(ep, last, keep) as env:
        if env is None:
            return None
        keep(last, env)
    return states
