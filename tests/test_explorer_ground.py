"""The app's grounded dream (explorer.session_ground): CarRacing's car physics over the dream's map, in split mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.api import DreamMap
from core.envs.dream_car import OFF_PLAYFIELD_REWARD, PLAYFIELD
from explorer.input import DriveKeys
from explorer.session import ZOOM_STEPS, Session, SessionConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_grounded_dream_moves_the_real_car_s_physics_over_its_map(data: Path) -> None:
    """Split mode grounds the dream (the default): its cars start from the real car and, fed the same actions, stay
    near it; the view shows the map's composite; a new dream's map holds the ground reality has shown; switched off,
    the dream is M's alone."""
    s = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="split", futures=2, seed=7))
    try:
        assert s.grounded
        for t in range(40):
            s.tick(DriveKeys(gas=True, left=10 <= t < 25))
        assert s._ground is not None
        position, heading = s._ground[1].pose()
        hull = s.env.unwrapped.car.hull  # type: ignore[attr-defined]
        assert float((position[0] - torch.tensor(tuple(hull.position))).norm()) < 1.0
        assert abs(float(heading[0]) - hull.angle) < 0.1 and float(hull.linearVelocity.length) > 5.0
        assert s.dream_speed == pytest.approx(float(s._ground[1].speed()[0]))  # the telemetry shows the car's
        assert s.dream_yaw_rate == pytest.approx(float(s._ground[1].yaw()[0]))
        shown, held = s._ground[0].render()  # the map from the car's pose: the view shows it where it keeps ground
        assert float(held[0].float().mean()) > 0.1
        frame = torch.from_numpy(s.dream_frame()).permute(2, 0, 1).float() / 255.0
        whole = s._ground[0].weight(held)[0, 0] == 1.0  # the map's alone (its feathered edge is a blend)
        assert float(whole.float().mean()) > 0.05
        assert float((frame - shown[0]).abs().amax(0)[whole].max()) <= 1.0 / 255.0 + 1e-6
        # a new dream starts from reality's map: the ground of the last 40 steps, more than one view holds
        s.start_dream("real")
        one_view = DreamMap(1, s._ground[0].size)
        assert s._real_x is not None
        one_view.reset(s._real_x)
        kept = float(s._ground[0].pixels[0, :, :, 3].sum())
        assert kept > 1.3 * float(one_view.pixels[0, :, :, 3].sum())
        s.set_ground_dream(False)
        assert not s.grounded and s.dream_tally.step == 0 and s._reality_map is None
    finally:
        s.close()


def test_dream_mode_with_the_autopilot_starts_its_dream_past_the_opening_zoom(data: Path) -> None:
    """The autopilot's real episode starts in CarRacing's opening zoom (frames at another scale, from which M dreams
    a void); a dream-mode dream from reality's frame first steps reality through the zoom with no action, and is
    grounded."""
    cfg = SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="dream", driver="autopilot", seed=3)
    s = Session(cfg)
    try:
        assert s.driver == "autopilot" and s.can_autopilot
        assert not s._real_zooming and 0 < s.real_tally.step <= ZOOM_STEPS  # reality settled before the dream
        assert s.grounded and s.dream_origin == "real"
        s.reset_real()  # a new real episode starts zoomed in again (the autopilot drives from its first frame)
        assert s._real_zooming and s.real_tally.step == 0
        s.start_dream("real")
        assert not s._real_zooming and 0 < s.real_tally.step <= ZOOM_STEPS and s.grounded
    finally:
        s.close()


def test_a_grounded_dream_is_paid_by_carracing_s_rule_like_reality(data: Path) -> None:
    """The grounded dream's reward is CarRacing's rule for its car on the map, not M's reward head (untrained here):
    parked it pays exactly -0.1 a step; with the gas held up the track's opening straight, within 10% of what
    reality pays for the same steps."""
    s = Session(SessionConfig(vision_runtime="pytorch", assets=data / "assets", mode="split", futures=1, seed=7))
    try:
        for _ in range(ZOOM_STEPS + 2):
            s.tick(DriveKeys())
        s.start_dream("real")
        assert s.grounded
        for _ in range(20):
            s.tick(DriveKeys())
        assert s.dream_tally.ret == pytest.approx(-0.1 * 20, abs=1e-6)  # float32 rewards
        s.start_dream("real")
        real_before = s.real_tally.ret
        for _ in range(60):
            s.tick(DriveKeys(gas=True))
        real = s.real_tally.ret - real_before
        assert real > 10.0 and s.dream_tally.ret == pytest.approx(real, rel=0.1)
        # the dream's car pushed past the playfield's edge: -100 and the dream is over, as CarRacing's episode
        # would be; split mode starts the next one from reality
        episode, paid = s.dream_tally.episode, []
        s._dream_stepped = paid.append  # type: ignore[method-assign]  # the step's reward, before the restart
        s._ground[1]._cars[0].hull.position = (PLAYFIELD + 5.0, 0.0)  # type: ignore[index]
        s.tick(DriveKeys())
        assert paid == [OFF_PLAYFIELD_REWARD] and s.dream_tally.episode == episode + 1 and s.grounded
    finally:
        s.close()
