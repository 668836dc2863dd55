"""The plain-text report of ``dream-explorer divergence``: the per-horizon figures of
:func:`core.divergence.dream_divergence` as a table, and the extra measurements below it."""

from __future__ import annotations

from core.divergence import NUDGE, NUDGE_STEPS, STEER_STEPS


def format_table(metrics: dict[str, float], horizons: tuple[int, ...]) -> str:
    """The per-horizon figures as a plain-text table."""
    names = ("latent_mse_dream", "latent_mse_copy", "latent_mse_dream_active", "latent_mse_copy_active",
             "pixel_mse_dream", "pixel_mse_copy", "pixel_mse_vision", "pixel_mse_mean")  # fmt: skip
    titles = ("latent dream", "latent copy", "active dream", "active copy", "pixel dream", "pixel copy", "pixel V",
              "pixel mean")  # fmt: skip
    rows = [f"{'horizon':>8} " + " ".join(f"{t:>12}" for t in (*titles, "dream/copy", "dream/mean"))]
    for k in horizons:
        values = [metrics.get(f"divergence/{name}@{k}", float("nan")) for name in names]
        ratios = [values[4] / v if v > 0 else float("nan") for v in (values[5], values[7])]  # pixel dream / baseline
        rows.append(f"{k:>8} " + " ".join(f"{v:>12.5f}" for v in values) + "".join(f" {r:>12.2f}" for r in ratios))
    h = max(horizons)
    rows.append("")
    rule = f"divergence/reward_sum_ground@{h}" in metrics  # a grounded dream: CarRacing's reward rule too
    rows.append(f"{'horizon':>8} {'road real':>10} {'road dream':>10} {'road V':>10} {'kept >=1/2':>10} "
                f"{'tracked':>10} {'reward real':>12} {'reward dream':>12} {'abs error':>10}"
                + (f" {'reward rule':>12} {'abs error':>10}" if rule else ""))  # fmt: skip
    for k in horizons:

        def g(name: str, k: int = k) -> float:
            return metrics.get(f"divergence/{name}@{k}", float("nan"))

        rows.append(
            f"{k:>8} {g('road_share_real'):>10.3f} {g('road_share_dream'):>10.3f} {g('road_share_vision'):>10.3f} "
            f"{g('road_kept'):>10.0%} {g('road_tracked'):>10.0%} {g('reward_sum_real'):>12.2f} "
            f"{g('reward_sum_dream'):>12.2f} {g('reward_sum_abs_error'):>10.2f}"
            + (f" {g('reward_sum_ground'):>12.2f} {g('reward_sum_ground_abs_error'):>10.2f}" if rule else "")
        )
    if any(f"divergence/car_within_road@{k}" in metrics for k in horizons):
        nan = float("nan")
        rows.append("")
        rows.append("the dream's car against reality's: mean distance (world units) and dreams within half the road's "
                    "width: " + ", ".join(f"{metrics.get(f'divergence/car_distance@{k}', nan):.1f} ("
                                          f"{metrics.get(f'divergence/car_within_road@{k}', nan):.0%}) @{k}"
                                          for k in horizons))  # fmt: skip
    if f"divergence/nudged_road_tracked@{h}" in metrics:
        rows.append("")
        rows.append(f"nudged reality (steering {NUDGE:+.1f} / {-NUDGE:+.1f} for {NUDGE_STEPS} steps, then the recorded "
                    "actions), road tracked: " + ", ".join(
                        f"{metrics[f'divergence/nudged_road_tracked@{k}']:.0%} @{k}" for k in horizons))  # fmt: skip
    if f"divergence/closed_road_kept@{h}" in metrics:
        rows.append("")
        rows.append(f"closed loop (the controller drives the dream): {'horizon':>8} {'road dream':>10} "
                    f"{'kept >=1/2':>10} {'reward dream':>12}")  # fmt: skip
        for k in horizons:
            rows.append(
                f"{'':>46} {k:>8} {metrics[f'divergence/closed_road_share_dream@{k}']:>10.3f} "
                f"{metrics[f'divergence/closed_road_kept@{k}']:>10.0%} "
                f"{metrics[f'divergence/closed_reward_sum_dream@{k}']:>12.2f}"
            )
    for name, what in (("parked", "full brake from mid-episode"), ("parked_start", "no input from the reset frame")):
        if f"divergence/{name}_reward_real@{h}" in metrics:
            rows.append(
                f"{name} ({what}, {h} steps): reward real {metrics[f'divergence/{name}_reward_real@{h}']:.2f}, "
                f"dream {metrics[f'divergence/{name}_reward_dream@{h}']:.2f}"
            )
    if f"divergence/coast_reward_dream@{h}" in metrics:
        c = {name: metrics[f"divergence/coast_{name}@{h}"] for name in ("reward_real", "reward_dream", "recorded_real",
                                                                         "recorded_dream")}  # fmt: skip
        pedals = f"no gas, brake {metrics.get('divergence/coast_brake', 0.0):.2f}"
        rows.append(f"coasting (recorded steering, {pedals}, {h} steps): reward real {c['reward_real']:.2f}, dream "
                    f"{c['reward_dream']:.2f}; the same windows' recorded actions: real {c['recorded_real']:.2f}, "
                    f"dream {c['recorded_dream']:.2f}")  # fmt: skip
    if f"divergence/speed_dream@{h}" in metrics:
        rows.append("speed (world units/s, HUD's against M's head) real / dream: " + ", ".join(
            f"{metrics[f'divergence/speed_real@{k}']:.1f} / {metrics[f'divergence/speed_dream@{k}']:.1f} @{k}"
            for k in horizons))  # fmt: skip
    if f"divergence/coast_speed_dream@{h}" in metrics:
        rows.append(f"speed after {h} steps of coasting: real {metrics[f'divergence/coast_speed_real@{h}']:.1f}, "
                    f"dream {metrics[f'divergence/coast_speed_dream@{h}']:.1f}")  # fmt: skip
    if "divergence/steer_response_dream" in metrics:
        rows.append(
            f"steering response (road offset after {STEER_STEPS} steps steering right minus left, pixels; "
            f"reality's is negative): real {metrics.get('divergence/steer_response_real', float('nan')):.2f}, "
            f"dream {metrics['divergence/steer_response_dream']:.2f}"
        )
    rows.append(
        f"off-manifold dreamed latents (norm above every real one): {metrics['divergence/off_manifold_share']:.2%}; "
        f"{int(metrics['divergence/windows'])} windows x {int(metrics['divergence/dreams'] / metrics['divergence/windows'])} dreams"
    )
    return "\n".join(rows)
