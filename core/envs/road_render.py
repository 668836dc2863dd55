"""CarRacing-v3's road drawing with the off-screen polygons culled in one NumPy pass: the same pixels, faster.

Gymnasium's ``CarRacing._render_road`` rotates, scales and tests each of its polygons (the playfield, 400 grass
patches and every road tile and kerb) for being near the screen in Python, every step, and draws the few that are.
That loop is the larger part of a real-env step (the README's Figures have the before and after), and real-env steps
are the larger part of a build from nothing. :func:`install` replaces the loop on one env instance with array
arithmetic over all polygons at once. It computes every vertex with the same IEEE double operations in the same
order as ``pygame.math.Vector2.rotate_rad`` followed by the scale and shift (the cosine and sine are pygame's own,
read off a rotated unit vector), keeps the same polygons, and draws them in the same order with the same
``pygame.gfxdraw`` calls, so every frame is the same bytes (``tests/test_road_render.py`` compares whole episodes
against the stock env).
"""

from __future__ import annotations

import types
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.box2d import car_racing as stock
from pygame import gfxdraw
from pygame.math import Vector2


def _grass_patches() -> np.ndarray:
    """float64 (400, 4, 2): the grass patches' corners in world units, built as ``CarRacing._render_road`` builds them."""
    g = stock.GRASS_DIM
    patches = [
        [(g * x + g, g * y + 0), (g * x + 0, g * y + 0), (g * x + 0, g * y + g), (g * x + g, g * y + g)]
        for x in range(-20, 20, 2)
        for y in range(-20, 20, 2)
    ]
    return np.asarray(patches, dtype=np.float64)


GRASS = _grass_patches()


def _road_arrays(road_poly: list) -> tuple[np.ndarray, np.ndarray]:
    """``(corners, counts)``: float64 (N, K, 2) corners of the N road polygons (padded to the longest, K, by repeating
    each one's last corner, which changes no bounds test) and int (N,) their own corner counts."""
    counts = np.array([len(poly) for poly, _ in road_poly], dtype=np.int64)
    k = int(counts.max()) if len(counts) else 1
    corners = np.zeros((len(road_poly), k, 2), dtype=np.float64)
    for i, (poly, _) in enumerate(road_poly):
        points = [(p[0], p[1]) for p in poly]
        points += [points[-1]] * (k - len(points))
        corners[i] = points
    return corners, counts


def _to_screen(corners: np.ndarray, zoom: float, translation: tuple[float, float], angle: float) -> np.ndarray:
    """float64 (..., K, 2) window pixel coordinates of world corners (..., K, 2): pygame's rotation by ``angle`` rad
    (``cos * x - sin * y``, ``sin * x + cos * y``), then ``* zoom + translation``, as the stock loop computes them."""
    cos, sin = Vector2(1.0, 0.0).rotate_rad(angle)  # exactly the (cos, sin) pygame rotates every vertex with
    x, y = corners[..., 0], corners[..., 1]
    screen = np.empty_like(corners)
    screen[..., 0] = (cos * x - sin * y) * zoom + translation[0]
    screen[..., 1] = (sin * x + cos * y) * zoom + translation[1]
    return screen


def _near_screen(screen: np.ndarray) -> np.ndarray:
    """bool (N,): polygons (N, K, 2 screen pixels) with a corner inside the window grown by ``MAX_SHAPE_DIM`` on each
    side, the stock test for drawing one."""
    m = stock.MAX_SHAPE_DIM
    x, y = screen[..., 0], screen[..., 1]
    inside = (x >= -m) & (x <= stock.WINDOW_W + m) & (y >= -m) & (y <= stock.WINDOW_H + m)
    return np.asarray(inside.any(axis=-1))


def _draw(surface: Any, points: np.ndarray, color: Any) -> None:
    """One polygon as the stock env draws it: its anti-aliased outline, then its fill."""
    poly = [tuple(point) for point in points.tolist()]  # Python floats, as the stock loop passes
    gfxdraw.aapolygon(surface, poly, color)
    gfxdraw.filled_polygon(surface, poly, color)


def render_road(self: Any, zoom: float, translation: tuple[float, float], angle: float) -> None:
    """Drop-in for ``CarRacing._render_road`` (bound to one env by :func:`install`): the playfield, then the grass
    patches and the road polygons near the screen, in the stock order."""
    b = stock.PLAYFIELD
    self._draw_colored_polygon(
        self.surf, [(b, b), (b, -b), (-b, -b), (-b, b)], self.bg_color, zoom, translation, angle, clip=False
    )
    grass = _to_screen(GRASS, zoom, translation, angle)
    for i in np.flatnonzero(_near_screen(grass)):
        _draw(self.surf, grass[i], self.grass_color)
    cache = self.__dict__.get("_road_arrays")
    if cache is None or cache[0] is not self.road_poly or len(cache[1]) != len(self.road_poly):
        cache = (self.road_poly, *_road_arrays(self.road_poly))  # a new track (reset) builds a new list
        self.__dict__["_road_arrays"] = cache
    road_poly, corners, counts = cache
    if not len(road_poly):
        return
    road = _to_screen(corners, zoom, translation, angle)
    for i in np.flatnonzero(_near_screen(road)):
        color = [int(c) for c in road_poly[i][1]]  # read every frame: CarRacing recolours tiles in place
        _draw(self.surf, road[i, : counts[i]], color)


def install(env: gym.Env) -> gym.Env:
    """Draw ``env``'s road with :func:`render_road` (this instance only; returns ``env``).

    Raises:
        TypeError: ``env`` does not unwrap to Gymnasium's ``CarRacing``.
    """
    car_racing = env.unwrapped
    if not isinstance(car_racing, stock.CarRacing):
        raise TypeError(f"expected a CarRacing env, got {type(car_racing).__name__}")
    car_racing._render_road = types.MethodType(render_road, car_racing)  # type: ignore[method-assign]
    return env
