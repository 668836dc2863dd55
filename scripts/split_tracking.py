"""How often the app's split-mode dream tracks reality's road, M alone against grounded (car physics + map); with
``--mode dream``, how often the dream keeps a road while the autopilot drives the dream itself.

For each track, the app's session (:class:`explorer.session.Session`, the shipped world model of ``--vision-kind``)
runs split mode for ``--steps`` steps with one future, tau ``--tau`` and a horizon longer than the run (one dream per
track; the autopilot's dream restarts once, after CarRacing's opening zoom), first with the dream ungrounded, then
grounded. Printed per driver and dream: the share of dream steps whose road share tracks reality's
(:func:`core.metrics.road.tracks_road`, as the View's "tracks road"), over all steps and over dream steps past 100,
and per track.

Usage:
    .venv/bin/python scripts/split_tracking.py --vision-kind dds_vae --driver autopilot --steps 400 \
        --seeds 1920010 1920011 1920012 1920013 1920014
"""

from __future__ import annotations

import argparse

import numpy as np

from explorer.session import Session, SessionConfig


def tracked(kind: str, driver: str, seed: int, steps: int, tau: float, ground: bool) -> list[tuple[int, bool]]:
    """(dream step, tracks reality's road) after every split-mode step of one track."""
    config = SessionConfig(vision_kind=kind, mode="split", driver=driver, seed=seed, futures=1,  # type: ignore[arg-type]
                           horizon=steps + 1, ground_dream=ground, tau=tau)  # fmt: skip
    session = Session(config)
    out = []
    try:
        for _ in range(steps):
            session.step()
            road = session.road
            if session.dream_tally.step > 0 and road is not None and road.tracks is not None:
                out.append((session.dream_tally.step, road.tracks))
    finally:
        session.close()
    return out


def kept_in_dream(kind: str, seed: int, steps: int, tau: float, ground: bool) -> tuple[list[bool], float]:
    """Dream mode, the autopilot driving the dream itself from the first settled real frame: after every step
    whether the dream keeps a road (its road share at least half of its start frame's), and the dream's return."""
    config = SessionConfig(vision_kind=kind, mode="dream", driver="human", seed=seed, futures=1,
                           horizon=steps + 1, ground_dream=ground, tau=tau)  # fmt: skip
    session = Session(config)  # a human starts past the opening zoom; the autopilot then takes the wheel
    out = []
    try:
        session.set_driver("autopilot")
        session.start_dream("real")
        road = session.road
        assert road is not None
        start = road.dream
        for _ in range(steps):
            session.step()
            road = session.road
            if road is not None:
                out.append(road.dream >= 0.5 * start)
        return out, session.dream_tally.ret
    finally:
        session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vision-kind", default="dds_vae", choices=["conv_vae", "dds_vae"])
    parser.add_argument("--driver", default="autopilot", choices=["autopilot", "random"])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--mode", default="split", choices=["split", "dream"])
    parser.add_argument("--dreams", default="both", choices=["both", "grounded"],
                        help="both: M alone, then grounded; grounded: only the grounded dream")  # fmt: skip
    args = parser.parse_args()
    grounds = (False, True) if args.dreams == "both" else (True,)
    if args.mode == "dream":
        for ground in grounds:
            runs = [kept_in_dream(args.vision_kind, seed, args.steps, args.tau, ground) for seed in args.seeds]
            name = "grounded" if ground else "M alone"
            print(f"{args.vision_kind} dream mode, autopilot, {name:8s}: keeps a road {np.mean([np.mean(k) for k, _ in runs]):.2f} "
                  f"of steps; per track " + " ".join(f"{np.mean(k):.2f}" for k, _ in runs)
                  + "; dream return " + " ".join(f"{r:.1f}" for _, r in runs))  # fmt: skip
        return
    for ground in grounds:
        shares: list[float] = []
        late: list[float] = []
        for seed in args.seeds:
            steps = tracked(args.vision_kind, args.driver, seed, args.steps, args.tau, ground)
            shares.append(float(np.mean([t for _, t in steps])))
            past = [float(t) for k, t in steps if k > 100]
            late.append(float(np.mean(past)) if past else float("nan"))
        name = "grounded" if ground else "M alone"
        print(f"{args.vision_kind} {args.driver} {name:8s}: tracked {np.mean(shares):.2f} of dream steps, "
              f"{np.nanmean(late):.2f} past 100; per track " + " ".join(f"{x:.2f}" for x in shares))  # fmt: skip


if __name__ == "__main__":
    main()
