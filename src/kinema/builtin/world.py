"""The procedural, seeded, captioned world the built-in video model is trained on.

A *scene* is a handful of discrete attributes (time of day, setting, weather, camera move, and optionally one
coloured subject with a motion). :func:`render` turns a scene into a short clip, :func:`caption` into one of many
English descriptions of it, and :func:`parse_prompt` maps free text back onto the attributes with the same synonym
tables, so that user prompts ("a red ball bouncing on green grass") land inside the world the model knows.

Design choices, and why:

- Everything is drawn with numpy on whole ``(F, H, W)`` arrays: a batch of 64 clips renders in well under a second
  on one CPU core, so training can keep drawing fresh clips instead of memorising a fixed set.
- The camera is a per-frame scale + translation of *world* coordinates (units of frame height, ``v`` down,
  horizon near ``v = 0.6``). The background is evaluated procedurally at those coordinates, which is the same as
  rendering an unbounded canvas and cropping / rescaling it per frame, with no edges to run out of. Because the map
  is separable, ``U`` is ``(F, 1, W)`` and ``V`` is ``(F, H, 1)``: heightmaps are 1-D lookups, never 2-D loops.
- Camera names follow cinematography: ``pan_left`` turns the camera left, so the *content* slides right in the frame;
  ``tilt_up`` looks up, so content slides down; ``zoom_in`` magnifies; ``aerial`` is a forward-and-down drone drift:
  a 1.3x zoom-in while content slides up. :mod:`kinema.builtin.detectors` uses the same conventions.
- The subject moves in *screen* space, independently of the camera, and is drawn last (in front of weather), in a
  saturated palette colour with a slightly darker rim. Backgrounds stay 70+ RGB units away from every saturated
  palette colour and ~30 from white and black (night is navy, never black; clouds, foam and snow are grey-white,
  never pure white), so a detector can find the subject by colour alone.
- Every ground carries coarse world-fixed texture (added after the weather, so snow, fog and night keep it): camera
  moves must be visible as the world sliding, scaling or tilting, not just as a moving horizon.
- Weather is deliberately bold (dense 2-px rain streaks, big flakes, heavy haze, big cloud banks): a small
  diffusion model only reproduces coarse features, and evaluation detectors must still recognise them. Waves are
  two crossing wave trains (lively, but no net drift that could pass for a camera move).
- Held-out pairs (:data:`HELDOUT_PAIRS`) never co-occur in the ``train`` split, so evaluation can measure
  compositional generalisation on the ``heldout`` split; every single value still appears in training.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "ATTRIBUTES",
    "HELDOUT_PAIRS",
    "PALETTE",
    "Scene",
    "camera_path",
    "caption",
    "is_heldout",
    "make_dataset",
    "parse_prompt",
    "render",
    "render_batch",
    "sample_scene",
    "still_caption",
    "tokenize",
    "vocabulary",
]

# ----------------------------------------------------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------------------------------------------------

TIMES = ("dawn", "day", "sunset", "night")
CELESTIALS = ("sun_rising", "sun_setting", "sun", "moon", "moon_rising", "none")
SETTINGS = ("mountains", "hills", "ocean", "beach", "city", "forest", "meadow")
WEATHERS = ("clear", "clouds", "rain", "snow", "fog")
CAMERAS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "aerial")
SUBJECTS = ("ball", "cube", "bird", "car", "boat", "balloon", "star", "fish")
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black")
SIZES = ("small", "large")
MOTIONS = ("left", "right", "up", "down", "bounce", "circle", "grow", "shrink", "static")

#: Every attribute and its allowed values. ``subject``, ``color``, ``size`` and ``motion`` may also be ``None``
#: (a scene without a subject); ``None`` is not listed here.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "time": TIMES,
    "celestial": CELESTIALS,
    "setting": SETTINGS,
    "weather": WEATHERS,
    "camera": CAMERAS,
    "subject": SUBJECTS,
    "color": COLORS,
    "size": SIZES,
    "motion": MOTIONS,
}

#: Which celestial bodies go with which time of day.
CELESTIAL_FOR_TIME: dict[str, tuple[str, ...]] = {
    "dawn": ("sun_rising",),
    "day": ("sun", "none"),
    "sunset": ("sun_setting",),
    "night": ("moon", "moon_rising"),
}

#: Plausible places for each subject (sampling prefers these; render accepts anything).
SUBJECT_SETTINGS: dict[str, tuple[str, ...]] = {
    "ball": SETTINGS,
    "cube": SETTINGS,
    "bird": SETTINGS,
    "car": ("mountains", "hills", "beach", "city", "forest", "meadow"),
    "boat": ("ocean", "beach"),
    "balloon": SETTINGS,
    "star": SETTINGS,
    "fish": ("ocean", "beach"),
}

#: Attribute pairs that never co-occur in the ``train`` split (about 15% of each family, drawn once with a seeded
#: generator and frozen here so they cannot drift). They exclude every pair used by the showcase prompts:
#: (red, ball), (ball, bounce), (mountains, dawn), (mountains, clouds), (ocean, day), (ocean, clear), (meadow, day),
#: (blue, car), (car, right), (city, night), (forest, dawn), (forest, snow). No value loses more than half its
#: partners, so every single value still appears in training. Camera and celestial are never held out.
HELDOUT_PAIRS: dict[tuple[str, str], frozenset[tuple[str, str]]] = {
    ("color", "subject"): frozenset(
        {
            ("black", "ball"),
            ("black", "bird"),
            ("black", "cube"),
            ("black", "star"),
            ("blue", "ball"),
            ("green", "balloon"),
            ("orange", "boat"),
            ("purple", "ball"),
            ("white", "cube"),
            ("yellow", "car"),
            ("yellow", "cube"),
        }
    ),
    ("subject", "motion"): frozenset(
        {
            ("ball", "right"),
            ("balloon", "down"),
            ("balloon", "left"),
            ("balloon", "static"),
            ("bird", "bounce"),
            ("bird", "up"),
            ("car", "grow"),
            ("cube", "down"),
            ("star", "down"),
            ("star", "grow"),
            ("star", "up"),
        }
    ),
    ("setting", "time"): frozenset(
        {
            ("beach", "day"),
            ("beach", "night"),
            ("hills", "sunset"),
            ("mountains", "night"),
        }
    ),
    ("setting", "weather"): frozenset(
        {
            ("forest", "clouds"),
            ("hills", "snow"),
            ("meadow", "clouds"),
            ("ocean", "rain"),
            ("ocean", "snow"),
        }
    ),
}

#: Subject colours: saturated and far apart (and far from every background colour the world draws).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (222, 24, 30),
    "orange": (255, 132, 0),
    "yellow": (255, 222, 0),
    "green": (28, 192, 40),
    "blue": (24, 58, 250),
    "purple": (142, 40, 212),
    "pink": (255, 104, 192),
    "white": (246, 246, 246),
    "black": (12, 12, 12),
}


@dataclass(frozen=True)
class Scene:
    """One point of the world: what a clip shows. Subject fields are all ``None`` for a landscape-only scene."""

    time: str
    celestial: str
    setting: str
    weather: str
    camera: str
    subject: str | None = None
    color: str | None = None
    size: str | None = None
    motion: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """Plain dict (JSON-ready), e.g. for logs and evaluation tables."""
        return asdict(self)


def _pairs(scene: Scene) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    d = scene.to_dict()
    return {fam: (d[fam[0]], d[fam[1]]) for fam in HELDOUT_PAIRS}


def is_heldout(scene: Scene) -> bool:
    """Whether the scene contains at least one held-out attribute pair (see :data:`HELDOUT_PAIRS`)."""
    return any(pair in HELDOUT_PAIRS[fam] for fam, pair in _pairs(scene).items())


def _choice(rng: np.random.Generator, values: tuple[str, ...] | list[str]) -> str:
    return values[int(rng.integers(len(values)))]


def _sample_raw(rng: np.random.Generator) -> Scene:
    time = _choice(rng, TIMES)
    celestial = _choice(rng, CELESTIAL_FOR_TIME[time])
    setting = _choice(rng, SETTINGS)
    weather = _choice(rng, WEATHERS)
    camera = _choice(rng, CAMERAS)
    if rng.random() < 0.15:
        return Scene(time, celestial, setting, weather, camera)
    plausible = [s for s in SUBJECTS if setting in SUBJECT_SETTINGS[s]]
    subject = _choice(rng, plausible)
    return Scene(
        time,
        celestial,
        setting,
        weather,
        camera,
        subject,
        _choice(rng, COLORS),
        _choice(rng, SIZES),
        _choice(rng, MOTIONS),
    )


def sample_scene(rng: np.random.Generator, split: str = "train") -> Scene:
    """A random scene. ``train`` never contains a held-out pair; ``heldout`` always contains at least one.

    Both use rejection sampling on the same base distribution, so the heldout split differs from train only in the
    pairs it contains.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    want = split == "heldout"
    while True:
        scene = _sample_raw(rng)
        if is_heldout(scene) == want:
            return scene


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------

_F32 = np.float32
_RGB = tuple[float, float, float]

#: Sky gradient keys per time: (at the horizon, half-way up, at the top of the frame).
SKY: dict[str, tuple[_RGB, _RGB, _RGB]] = {
    "dawn": ((250, 168, 138), (232, 172, 178), (138, 184, 236)),
    "day": ((150, 196, 242), (96, 158, 236), (56, 122, 226)),
    "sunset": ((248, 152, 88), (204, 76, 88), (84, 44, 116)),
    "night": ((34, 44, 92), (22, 30, 72), (14, 20, 58)),
}
#: Lighting of ground and objects per time: multiplicative tint and additive ambient (keeps night navy, not black).
LIGHT: dict[str, tuple[_RGB, _RGB]] = {
    "dawn": ((0.92, 0.8, 0.8), (22, 12, 18)),
    "day": ((1.0, 1.0, 1.0), (0, 0, 0)),
    "sunset": ((0.86, 0.58, 0.5), (30, 14, 32)),
    "night": ((0.36, 0.38, 0.44), (8, 14, 46)),
}
SUN_COLOR: dict[str, _RGB] = {"dawn": (255, 226, 170), "day": (255, 246, 204), "sunset": (255, 196, 122)}
MOON_COLOR: _RGB = (216, 212, 172)
CLOUD: dict[str, tuple[_RGB, _RGB]] = {  # (lit top, shaded underside)
    "dawn": ((226, 204, 210), (176, 156, 170)),
    "day": ((206, 211, 222), (160, 166, 182)),
    "sunset": ((232, 166, 148), (146, 92, 112)),
    "night": ((108, 114, 134), (62, 68, 90)),
}
FOG: dict[str, _RGB] = {
    "dawn": (206, 194, 198),
    "day": (194, 199, 205),
    "sunset": (184, 160, 156),
    "night": (70, 76, 92),
}
RAIN_STREAK: _RGB = (196, 202, 216)
SNOW_FLAKE: _RGB = (212, 220, 236)
SNOW_GROUND: _RGB = (204, 210, 222)

#: Size of the subject in frame heights.
SUBJECT_SIZE = {"small": 0.16, "large": 0.3}
#: Camera paths: pan and tilt amplitudes (frame heights over the clip) and zoom factors.
PAN, TILT, ZOOM, AERIAL_ZOOM, AERIAL_TILT = 0.25, 0.22, 1.5, 1.3, 0.1


def _rgb(c: _RGB | tuple[int, int, int]) -> np.ndarray:
    return np.asarray(c, dtype=_F32)


def _lit(c: _RGB | np.ndarray, time: str) -> np.ndarray:
    """A ground/object colour under the time of day's light."""
    tint, amb = LIGHT[time]
    return np.asarray(c, _F32) * _rgb(tint) + _rgb(amb)


def _mix(img: np.ndarray, color: np.ndarray, alpha: np.ndarray | float) -> np.ndarray:
    """Alpha-blend ``color`` over ``img``; ``alpha`` broadcasts against ``img[..., 0]``."""
    a = np.asarray(alpha, _F32)
    if a.ndim:
        a = a[..., None]
    return img + (color - img) * a


def _paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """In place: where ``mask`` (broadcasting to (F, H, W)) holds, set ``img`` to ``color`` (RGB or a map)."""
    np.copyto(img, color, where=mask[..., None])


def camera_path(camera: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (pan, tilt, zoom): the view's centre offset in world units and its magnification."""
    zero, one = np.zeros_like(t), np.ones_like(t)
    if camera == "pan_left":  # the view moves left, so content slides right
        return PAN / 2 - PAN * t, zero, one
    if camera == "pan_right":
        return -PAN / 2 + PAN * t, zero, one
    if camera == "tilt_up":  # the view moves up, so content slides down
        return zero, TILT / 2 - TILT * t, one
    if camera == "tilt_down":
        return zero, -TILT / 2 + TILT * t, one
    if camera == "zoom_in":
        return zero, zero, ZOOM**t
    if camera == "zoom_out":
        return zero, zero, ZOOM ** (1 - t)
    if camera == "aerial":  # forward (zoom in) and descending (content slides up)
        return zero, AERIAL_TILT * t, AERIAL_ZOOM**t
    if camera == "static":
        return zero, zero, one
    raise ValueError(f"unknown camera {camera!r}")


class _Canvas:
    """World coordinates of every pixel of every frame, plus the lookups shared by the layers."""

    def __init__(self, scene: Scene, rng: np.random.Generator, f: int, h: int, w: int) -> None:
        self.scene, self.rng, self.f, self.h, self.w = scene, rng, f, h, w
        self.t = np.linspace(0.0, 1.0, f, dtype=_F32)  # (F,)
        pan, tilt, zoom = camera_path(scene.camera, self.t)
        self.pan, self.tilt, self.zoom = pan, tilt, zoom
        xs = ((np.arange(w, dtype=_F32) + 0.5 - w / 2) / h)[None, None, :]  # (1, 1, W)
        ys = ((np.arange(h, dtype=_F32) + 0.5 - h / 2) / h)[None, :, None]  # (1, H, 1)
        self.u = (xs / zoom[:, None, None] + pan[:, None, None]).astype(_F32)  # (F, 1, W)
        self.v = (ys / zoom[:, None, None] + tilt[:, None, None] + 0.5).astype(_F32)  # (F, H, 1)
        self.tt = self.t[:, None, None]  # (F, 1, 1)
        self.horizon = float(rng.uniform(0.58, 0.63))
        self.grid = np.linspace(-2.0, 2.0, 1601, dtype=_F32)  # 1-D lattice for heightmaps
        self.noise = rng.uniform(-1.0, 1.0, (256, 256)).astype(_F32)  # world-fixed texture table

    def heightmap(self, profile: np.ndarray) -> np.ndarray:
        """A 1-D profile over :attr:`grid` looked up at every column's world ``u``: (F, 1, W)."""
        return np.interp(self.u, self.grid, profile).astype(_F32)

    def smooth_texture(self, fu: float, fv: float) -> np.ndarray:
        """Like :meth:`texture` but bilinearly interpolated between lattice points (soft blotches): (F, H, W)."""
        su, sv = self.u * fu, self.v * fv
        iu, iv = np.floor(su).astype(np.int64), np.floor(sv).astype(np.int64)
        au = (su - iu).astype(_F32)  # (F, 1, W)
        av = (sv - iv).astype(_F32)  # (F, H, 1)
        au, av = au * au * (3 - 2 * au), av * av * (3 - 2 * av)  # smoothstep: no visible lattice
        n = self.noise
        i0, i1, j0, j1 = iu & 255, (iu + 1) & 255, iv & 255, (iv + 1) & 255
        top = n[j0, i0] * (1 - au) + n[j0, i1] * au
        bot = n[j1, i0] * (1 - au) + n[j1, i1] * au
        return top * (1 - av) + bot * av

    def texture(self, fu: float, fv: float) -> np.ndarray:
        """World-fixed blocky noise in [-1, 1] with cells ``1/fu`` wide and ``1/fv`` tall: (F, H, W)."""
        iu = np.floor(self.u * fu).astype(np.int64) & 255  # (F, 1, W)
        iv = np.floor(self.v * fv).astype(np.int64) & 255  # (F, H, 1)
        return self.noise[iv, iu]

    def to_screen(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x, y) per frame of world points (u, v): each (F, N)."""
        z = self.zoom[:, None] * self.h
        x = (u[None, :] - self.pan[:, None]) * z + self.w / 2 - 0.5
        y = (v[None, :] - 0.5 - self.tilt[:, None]) * z + self.h / 2 - 0.5
        return x, y


def _bumps(grid: np.ndarray, centers: np.ndarray, heights: np.ndarray, widths: np.ndarray, kind: str) -> np.ndarray:
    """Upper envelope of triangles (``kind="tri"``) or parabolas (``"dome"``) over the 1-D grid."""
    d = np.abs(grid[None, :] - centers[:, None]) / widths[:, None]  # (N, G)
    shape = 1.0 - d if kind == "tri" else 1.0 - d * d
    return np.maximum(shape * heights[:, None], 0.0).max(axis=0).astype(_F32)


def _jagged(rng: np.random.Generator, grid: np.ndarray, step: float, lo: float, hi: float) -> np.ndarray:
    """Piecewise-linear random ridge with control points every ``step``: mountain-like."""
    knots = np.arange(grid[0] - step, grid[-1] + 2 * step, step, dtype=_F32)
    vals = rng.uniform(lo, hi, knots.size).astype(_F32)
    fine = np.arange(grid[0], grid[-1] + step, step / 4, dtype=_F32)
    detail = rng.uniform(-0.012, 0.012, fine.size).astype(_F32)
    return (np.interp(grid, knots, vals) + np.interp(grid, fine, detail)).astype(_F32)


def _smooth(rng: np.random.Generator, grid: np.ndarray, base: float, amp: float) -> np.ndarray:
    """Sum of a few random sinusoids: rolling hills."""
    out = np.full(grid.shape, base, _F32)
    for freq in (1.3, 2.9, 5.3):
        out += amp / freq**0.6 * np.sin(2 * np.pi * (freq * grid + rng.random())).astype(_F32)
    return out


def _sky(c: _Canvas) -> np.ndarray:
    """Vertical gradient (F, H, 1, 3) from the horizon colour through mid to top."""
    lo, mid, hi = (_rgb(k) for k in SKY[c.scene.time])
    e = np.clip((c.horizon - c.v) / 0.55, 0.0, 1.0)[..., None]  # (F, H, 1, 1)
    low = lo + (mid - lo) * np.minimum(e * 2, 1.0)
    return np.where(e < 0.5, low, mid + (hi - mid) * np.clip(e * 2 - 1, 0.0, 1.0))


def _stars(c: _Canvas, img: np.ndarray) -> None:
    rng = c.rng
    n = 90
    u = rng.uniform(-1.4, 1.4, n).astype(_F32)
    v = rng.uniform(-0.4, c.horizon - 0.08, n).astype(_F32)
    x, y = c.to_screen(u, v)  # (F, N)
    xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    ok = (xi >= 0) & (xi < c.w) & (yi >= 0) & (yi < c.h)
    fi = np.broadcast_to(np.arange(c.f)[:, None], xi.shape)
    bright = rng.uniform(0.55, 1.0, (c.f, n)).astype(_F32)  # twinkle
    img[fi[ok], yi[ok], xi[ok]] = (_rgb((226, 228, 240)) * bright[ok][:, None]).astype(_F32)


def _celestial(c: _Canvas, img: np.ndarray) -> None:
    """Sun or moon disc with a glow; rising / setting ones travel 0.2 frame heights over the clip."""
    sc, rng = c.scene, c.rng
    kind = sc.celestial
    if kind == "none":
        return
    uc = float(rng.uniform(-0.28, 0.28))
    low, high = c.horizon + 0.03, c.horizon - 0.22
    if kind in ("sun_rising", "moon_rising"):
        vc = low + (high - low) * c.tt
    elif kind == "sun_setting":
        vc = high + (low - high) * c.tt
    else:
        vc = np.full_like(c.tt, rng.uniform(0.1, 0.26))
    is_sun = kind.startswith("sun")
    r = 0.075 if is_sun else 0.066
    du2, dv2 = (c.u - uc) ** 2, (c.v - vc) ** 2  # (F, 1, W), (F, H, 1)
    col = _rgb(SUN_COLOR.get(sc.time, SUN_COLOR["day"])) if is_sun else _rgb(MOON_COLOR)
    # a low sun gets a wide warm glow; the midday sun and the moon only a small halo (which would read as cloud)
    spread, strength = (2.4, 0.55) if kind in ("sun_rising", "sun_setting") else (1.7, 0.3)
    sg = (r * spread) ** 2
    glow = (np.exp(-dv2 / sg) * strength) * np.exp(-du2 / sg)  # separable Gaussian, (F, H, W)
    img += (col - img) * glow[..., None]
    _paint(img, du2 + dv2 < r * r, col)
    if not is_sun:  # a few darker maria make it read as a moon
        for du, dv, rr in ((-0.02, -0.015, 0.022), (0.022, 0.02, 0.016)):
            _paint(img, (c.u - uc - du) ** 2 + (c.v - vc - dv) ** 2 < rr * rr, col * 0.86)


def _clouds(c: _Canvas, img: np.ndarray) -> None:
    """Soft cloud blobs drifting slowly sideways.

    Each puff is a separable Gaussian g(u) g(v), so the density of all puffs is one batched matrix product
    (F, H, K) @ (F, K, W) instead of K full-frame passes.
    """
    rng = c.rng
    top, under = (_rgb(k) for k in CLOUD[c.scene.time])
    drift = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.06))
    n = int(rng.integers(10, 14))
    cu = np.repeat(np.sort(rng.uniform(-1.3, 1.3, n)), 3) + rng.uniform(-0.1, 0.1, 3 * n)  # (K,)
    cv = np.repeat(rng.uniform(0.02, c.horizon - 0.2, n), 3) + rng.uniform(-0.03, 0.02, 3 * n)
    su, sv = rng.uniform(0.08, 0.14, 3 * n), rng.uniform(0.04, 0.065, 3 * n)
    pu = cu[None, :] + drift * c.t[:, None]  # (F, K)
    gu = np.exp(-(((c.u[:, 0, :, None] - pu[:, None, :]) / su) ** 2)).astype(_F32)  # (F, W, K)
    dv = (c.v[:, :, 0, None] - cv[None, None, :]) / sv  # (F, H, K)
    gv = np.exp(-(dv**2)).astype(_F32)
    gu_t = gu.transpose(0, 2, 1)  # (F, K, W)
    dens = gv @ gu_t  # (F, H, W)
    shade = (gv * np.clip(dv, 0.0, 1.0).astype(_F32)) @ gu_t  # undersides darker
    alpha = np.clip(dens * 2.2 - 0.35, 0.0, 0.96)
    col = top + (under - top) * np.clip(shade / np.maximum(dens, 1e-3), 0.0, 1.0)[..., None]
    img += (col - img) * alpha[..., None]


# --- settings: each paints the ground (and what stands on it) over the sky, in place -----------------------------


def _mountains(c: _Canvas, img: np.ndarray) -> None:
    time, hz, rng = c.scene.time, c.horizon, c.rng
    far = _jagged(rng, c.grid, 0.075, 0.07, 0.21)
    near = _jagged(rng, c.grid, 0.11, 0.015, 0.09)
    hf, hn = c.heightmap(far), c.heightmap(near)  # (F, 1, W)
    tex = c.texture(40, 40)
    far_mask = c.v > hz - hf
    rock = _lit((118, 124, 156), time) * (1 + 0.07 * tex[..., None])
    _paint(img, far_mask, rock)
    snow = far_mask & (c.v < hz - hf + 0.035) & (hf > 0.13)
    _paint(img, snow, _lit((204, 210, 226), time))
    _paint(img, c.v > hz - hn, _lit((84, 80, 96), time) * (1 + 0.08 * tex[..., None]))
    depth = np.clip((c.v - hz) / 0.4, 0, 1)[..., None]
    ground = _lit((96, 118, 70), time) + (_lit((66, 96, 52), time) - _lit((96, 118, 70), time)) * depth
    _paint(img, c.v > hz, ground * (1 + 0.08 * tex[..., None]))


def _hills(c: _Canvas, img: np.ndarray) -> None:
    time, hz, rng = c.scene.time, c.horizon, c.rng
    far = c.heightmap(_smooth(rng, c.grid, 0.07, 0.025))
    near = c.heightmap(_smooth(rng, c.grid, 0.0, 0.03))
    tex = c.texture(55, 30)[..., None]
    _paint(img, c.v > hz - far, _lit((126, 172, 96), time) * (1 + 0.05 * tex))
    _paint(img, c.v > hz - near, _lit((96, 156, 70), time) * (1 + 0.07 * tex))
    # bushes dotting the near slopes give the ground texture to track
    bush = (c.texture(14, 10) > 0.7) & (c.v > hz - near + 0.02)
    _paint(img, bush, _lit((52, 104, 48), time))


def _water(c: _Canvas, img: np.ndarray, top: float, bottom: np.ndarray | float) -> None:
    """Animated waves between ``top`` and ``bottom`` (world v): bands denser towards the horizon, moving."""
    time, rng = c.scene.time, c.rng
    depth = np.maximum(c.v - top, 0.0)  # (F, H, 1)
    far, near = _lit((72, 128, 178), time), _lit((22, 68, 128), time)
    base = far + (near - far) * np.clip(depth / 0.38, 0, 1)[..., None]  # (F, H, 1, 3)
    q = np.log(depth + 0.035)  # perspective: band spacing grows towards the viewer
    # two wave trains crossing at an angle: lively bands with no net drift a camera-motion estimate could latch onto
    ph1, ph2 = rng.random(2)
    wave = 0.6 * np.sin(2 * np.pi * (3.2 * q + 1.5 * c.u - 1.2 * c.tt + ph1))  # (F, H, W)
    wave += 0.5 * np.sin(2 * np.pi * (2.6 * q - 1.9 * c.u + 1.0 * c.tt + ph2))
    col = base * (1 + 0.2 * wave[..., None])
    foam = np.clip((wave - 0.75) * 4, 0, 1) * (c.texture(30, 60) > -0.2)
    col = _mix(col, _lit((200, 220, 234), time), foam * 0.8)
    mask = (c.v > top) & (c.v <= bottom)
    _paint(img, mask, col)


def _islands(c: _Canvas, img: np.ndarray) -> None:
    rng = c.rng
    n = int(rng.integers(2, 4))
    prof = _bumps(c.grid, rng.uniform(-0.9, 0.9, n), rng.uniform(0.02, 0.05, n), rng.uniform(0.08, 0.2, n), "dome")
    _paint(img, (c.v > c.horizon - c.heightmap(prof)) & (c.v <= c.horizon), _lit((78, 96, 108), c.scene.time))


def _rocks(c: _Canvas, img: np.ndarray) -> None:
    """1-3 dark rocks in the surf with pulsing white spray."""
    time, rng = c.scene.time, c.rng
    for _ in range(int(rng.integers(1, 4))):
        ur = rng.uniform(-0.45, 0.45)
        vr = c.horizon + rng.uniform(0.14, 0.3)
        wr, hr = rng.uniform(0.06, 0.11), rng.uniform(0.05, 0.08)
        du, dv = (c.u - ur) / wr, (c.v - vr) / hr
        rock = (du**2 + dv**2 < 1) & (dv < 0.15)
        _paint(img, rock, _lit((74, 68, 74), time) * (1 + 0.1 * c.texture(60, 60)[..., None]))
        pulse = 0.55 + 0.45 * np.sin(2 * np.pi * (2.0 * c.tt + rng.random()))  # (F, 1, 1)
        su, sv = (c.u - ur) / (wr * 1.5), (c.v - (vr - hr * 0.9)) / (hr * 1.3 * pulse)
        spray = np.clip(1.2 - su**2 - sv**2, 0, 1) * pulse
        img += (_rgb((200, 220, 234)) * 0.85 + _lit((200, 220, 234), time) * 0.15 - img) * (spray * 0.85)[..., None]


def _ocean(c: _Canvas, img: np.ndarray) -> None:
    _water(c, img, c.horizon, 10.0)
    _islands(c, img)
    _rocks(c, img)


def _beach(c: _Canvas, img: np.ndarray) -> None:
    time, hz, rng = c.scene.time, c.horizon, c.rng
    swash = 0.02 * np.sin(2 * np.pi * (1.5 * c.tt + rng.random()))  # (F, 1, 1): the surf runs up and back
    shore = hz + 0.13 + 0.02 * np.sin(2 * np.pi * (1.7 * c.u + rng.random())) + swash  # (F, 1, W)
    tex = c.texture(70, 70)[..., None]
    sand = _lit((222, 196, 146), time) * (1 + 0.06 * tex)
    _paint(img, c.v > hz, sand)
    _paint(img, (c.v > shore) & (c.v < shore + 0.035), _lit((186, 160, 122), time))  # wet sand
    pebbles = (c.texture(24, 24) > 0.85) & (c.v > shore + 0.05)
    _paint(img, pebbles, _lit((150, 128, 100), time))
    _water(c, img, hz, shore)
    foam = (c.v > shore - 0.012) & (c.v <= shore)
    _paint(img, foam, _lit((200, 220, 234), time))
    _islands(c, img)


def _city(c: _Canvas, img: np.ndarray) -> None:
    """Two layers of rectangular buildings with a window grid; windows light up from sunset to dawn."""
    time, hz, rng = c.scene.time, c.horizon, c.rng
    lit_frac = {"dawn": 0.35, "day": 0.0, "sunset": 0.45, "night": 0.55}[time]
    for layer, (hlo, hhi, shade) in enumerate(((0.12, 0.27, 1.12), (0.04, 0.16, 0.8))):
        widths = rng.uniform(0.06, 0.15, 80).astype(_F32)
        edges = np.concatenate([[-3.0], -3.0 + np.cumsum(widths)]).astype(_F32)
        heights = rng.uniform(hlo, hhi, 81).astype(_F32)
        greys = rng.uniform(96, 150, 81).astype(_F32)
        idx = np.searchsorted(edges, c.u)  # (F, 1, W)
        top = hz - heights[idx]
        mask = c.v > top  # (F, H, W)
        body = greys[idx][..., None] * _rgb((0.9, 0.95, 1.08)) * shade  # (F, 1, W, 3)
        _paint(img, mask, _lit(body, time))
        cu, cv = 0.034, 0.042  # window cell
        fu = (c.u - edges[np.maximum(idx - 1, 0)]) / cu
        fv = (c.v - hz) / cv
        win = mask & (fu % 1 > 0.3) & (fu % 1 < 0.8) & (fv % 1 > 0.3) & (fv % 1 < 0.75)
        win &= (c.v > top + 0.02) & (c.v < hz - 0.01) & (fu > 0.25)
        lit = (
            c.noise[(np.floor(fv).astype(np.int64) + 37 * layer) & 255, (np.floor(fu).astype(np.int64) + idx) & 255]
            + 1
        ) / 2 < lit_frac
        _paint(img, win & ~lit, _lit((58, 66, 86) if time != "day" else (150, 172, 204), time))
        _paint(img, win & lit, _rgb((255, 208, 112)))
    _paint(img, c.v > hz, _lit((74, 74, 82), time))
    dash = (np.abs(c.v - hz - 0.16) < 0.012) & (((c.u * 6) % 1) < 0.5)
    _paint(img, dash, _lit((214, 210, 186), time))
    _paint(img, np.abs(c.v - hz - 0.02) < 0.012, _lit((120, 120, 126), time))  # kerb


def _forest(c: _Canvas, img: np.ndarray) -> None:
    time, hz, rng = c.scene.time, c.horizon, c.rng
    for n, (hlo, hhi), col, base in ((100, (0.07, 0.15), (62, 98, 84), 0.0), (40, (0.12, 0.24), (34, 82, 44), 0.05)):
        centers = rng.uniform(-2, 2, n).astype(_F32)
        heights = rng.uniform(hlo, hhi, n).astype(_F32)
        prof = _bumps(c.grid, centers, heights, heights * 0.33, "tri")
        _paint(img, c.v > hz + base - c.heightmap(prof), _lit(col, time) * (1 + 0.08 * c.texture(50, 50)[..., None]))
    _paint(img, c.v > hz + 0.05, _lit((60, 80, 44), time) * (1 + 0.1 * c.texture(40, 60)[..., None]))


def _meadow(c: _Canvas, img: np.ndarray) -> None:
    time, hz, rng = c.scene.time, c.horizon, c.rng
    n = int(rng.integers(10, 16))
    prof = _bumps(c.grid, rng.uniform(-2, 2, n), rng.uniform(0.015, 0.04, n), rng.uniform(0.05, 0.14, n), "dome")
    _paint(img, c.v > hz - c.heightmap(prof), _lit((58, 104, 58), time))
    # a few lone trees: trunk + round crown
    for _ in range(int(rng.integers(2, 4))):
        ut, ht = rng.uniform(-0.6, 0.6), rng.uniform(0.07, 0.11)
        trunk = (np.abs(c.u - ut) < 0.008) & (c.v > hz - ht) & (c.v < hz + 0.01)
        _paint(img, trunk, _lit((82, 62, 44), time))
        crown = ((c.u - ut) / 0.04) ** 2 + ((c.v - (hz - ht)) / 0.035) ** 2 < 1
        _paint(img, crown, _lit((50, 110, 54), time))
    depth = np.clip((c.v - hz) / 0.4, 0, 1)[..., None]
    far, near = _lit((150, 184, 92), time), _lit((82, 150, 52), time)
    grass = (far + (near - far) * depth) * (1 + 0.12 * c.texture(90, 18)[..., None])
    _paint(img, c.v > hz, grass)


_SETTING_PAINTERS = {
    "mountains": _mountains,
    "hills": _hills,
    "ocean": _ocean,
    "beach": _beach,
    "city": _city,
    "forest": _forest,
    "meadow": _meadow,
}


# --- weather --------------------------------------------------------------------------------------------------


def _lines(c: _Canvas, img: np.ndarray, n: int, length: float, slant: float, color: np.ndarray, alpha: float) -> None:
    """Rain: ``n`` straight streaks per frame at fresh random places (rain is too fast to track frame to frame)."""
    rng = c.rng
    h, w = c.h, c.w
    steps = max(2, int(length * h))
    x0 = rng.uniform(-0.2 * w, 1.2 * w, (c.f, n, 1))
    y0 = rng.uniform(-length * h, h, (c.f, n, 1))
    s = np.arange(steps, dtype=_F32)[None, None, :]
    ys = np.rint(y0 + s).astype(np.int64)  # (F, n, L)
    xs = np.rint(x0 + s * slant).astype(np.int64)
    width = max(1, round(h / 32))
    fi = np.broadcast_to(np.arange(c.f)[:, None, None], ys.shape)
    for dx in range(width):
        xx = xs + dx
        ok = (xx >= 0) & (xx < w) & (ys >= 0) & (ys < h)
        f, y, x = fi[ok], ys[ok], xx[ok]
        img[f, y, x] = img[f, y, x] + (color - img[f, y, x]) * alpha


def _flakes(c: _Canvas, img: np.ndarray, n: int) -> None:
    """Snow: big round flakes falling at steady per-flake speeds, swaying sideways."""
    rng = c.rng
    h, w = c.h, c.w
    x0, y0 = rng.uniform(0, w, n), rng.uniform(0, h, n)
    speed = rng.uniform(0.6, 1.1, n) * h
    sway = rng.uniform(0.5, 1.5, n) * h / 64
    ph = rng.uniform(0, 2 * np.pi, n)
    t = c.t[:, None]
    y = (y0[None] + speed[None] * t) % h  # (F, n)
    x = (x0[None] + sway[None] * np.sin(2 * np.pi * t + ph[None])) % w
    rad = rng.uniform(1.0, 1.7, n) * h / 64
    r = int(np.ceil(rad.max()))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            keep = dx * dx + dy * dy <= rad**2  # (n,)
            yy = np.rint(y[:, keep] + dy).astype(np.int64) % h
            xx = np.rint(x[:, keep] + dx).astype(np.int64) % w
            fi = np.broadcast_to(np.arange(c.f)[:, None], yy.shape)
            img[fi, yy, xx] = _rgb(SNOW_FLAKE)


def _weather_before_ground(c: _Canvas, img: np.ndarray) -> None:
    if c.scene.weather == "clouds":
        _clouds(c, img)


def _weather_after_ground(c: _Canvas, img: np.ndarray) -> None:
    """Haze and precipitation over the whole background (the subject is drawn later, in front)."""
    weather, time, hz = c.scene.weather, c.scene.time, c.horizon
    if weather == "rain":
        lum = img @ _rgb((0.3, 0.55, 0.15))  # (F, H, W)
        grey = lum[..., None] * _rgb((0.95, 0.98, 1.06))
        img[:] = (img * 0.35 + grey * 0.65) * 0.72 + _rgb((18, 20, 26))
        _lines(c, img, int(0.012 * c.h * c.w), 0.17, float(c.rng.choice([-0.35, 0.0, 0.35])), _rgb(RAIN_STREAK), 0.7)
    elif weather == "snow":
        sky = c.v < hz
        sky_col, ground_col = _lit((186, 192, 206), time), _lit(SNOW_GROUND, time)
        img[:] = np.where(sky[..., None], _mix(img, sky_col, 0.4), _mix(img, ground_col, 0.5))
        _flakes(c, img, int(0.02 * c.h * c.w))
    elif weather == "fog":
        amount = np.clip(0.82 - 1.0 * np.maximum(c.v - hz, 0.0), 0.45, 0.82)  # (F, H, 1): thicker far away
        img[:] = _mix(img, _rgb(FOG[time]), np.broadcast_to(amount, img.shape[:3]))


# --- subject ----------------------------------------------------------------------------------------------------

SKY_SUBJECTS = ("bird", "balloon", "star")
WATER_SUBJECTS = ("boat", "fish")


def _subject_path(scene: Scene, rng: np.random.Generator, t: np.ndarray, aspect: float) -> tuple[np.ndarray, ...]:
    """Per-frame centre (x as a fraction of width, y as a fraction of height) and size (fraction of height)."""
    base = SUBJECT_SIZE[scene.size or "small"]
    subject, motion = scene.subject or "ball", scene.motion or "static"
    if subject in SKY_SUBJECTS:
        y_home = rng.uniform(0.24, 0.4)
    elif subject in WATER_SUBJECTS:
        y_home = rng.uniform(0.72, 0.8)
    else:
        y_home = rng.uniform(0.74, 0.8)
    x_home = rng.uniform(0.3, 0.7)
    one = np.ones_like(t)
    x, y, s = x_home * one, y_home * one, base * one
    if motion in ("left", "right"):
        a, b = (0.78, 0.22) if motion == "left" else (0.22, 0.78)
        x = a + (b - a) * t
    elif motion in ("up", "down"):
        a, b = (0.8, 0.26) if motion == "up" else (0.26, 0.8)
        y = a + (b - a) * t
    elif motion == "bounce":  # two parabolic hops off the ground line
        ground = 0.82 - base / 2
        ph = (t * 2) % 1.0
        ph[-1] = 1.0 if t[-1] >= 1 else ph[-1]
        y = ground - 1.4 * ph * (1 - ph)
    elif motion == "circle":  # one full loop
        cx, cy = rng.uniform(0.42, 0.58), rng.uniform(0.46, 0.54)
        ang = rng.uniform(0, 2 * np.pi) + rng.choice([-1.0, 1.0]) * 2 * np.pi * t
        x, y = cx + 0.25 / aspect * np.cos(ang), cy + 0.25 * np.sin(ang)
    elif motion in ("grow", "shrink"):
        y = rng.uniform(0.42, 0.6) * one
        k = t if motion == "grow" else 1 - t
        s = base * 0.6 * (2.5**k)
    return x.astype(_F32), y.astype(_F32), s.astype(_F32)


def _shape(subject: str, lx: np.ndarray, ly: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(body, accent) masks of a subject in local coordinates (units of its size, centre at 0, y down)."""
    none = np.zeros(lx.shape, bool)
    if subject == "ball":
        return lx**2 + ly**2 < 0.25, none
    if subject == "cube":
        return (np.abs(lx) < 0.42) & (np.abs(ly) < 0.42), none
    if subject == "bird":
        flap = 0.55 * np.cos(2 * np.pi * 3 * t)  # (F, 1, 1): wings up and down
        body = (lx / 0.42) ** 2 + (ly / 0.25) ** 2 < 1
        head = (lx - 0.34) ** 2 + (ly + 0.08) ** 2 < 0.15**2
        wing_line = -flap * (np.abs(lx) - 0.08)
        wings = (np.abs(lx) < 0.5) & (ly > wing_line - 0.13) & (ly < wing_line + 0.1) & (np.abs(lx) > 0.05)
        beak = (lx > 0.46) & (lx < 0.56) & (np.abs(ly + 0.08) < 0.04)
        eye = (lx - 0.38) ** 2 + (ly + 0.12) ** 2 < 0.04**2
        return (body | head | wings | beak) & ~eye, eye
    if subject == "car":
        body = (np.abs(lx) < 0.5) & (ly > -0.1) & (ly < 0.24)
        cabin = (np.abs(lx + 0.04) < 0.27 - 0.35 * np.maximum(-ly - 0.05, 0)) & (ly > -0.3) & (ly <= -0.05)
        window = (np.abs(lx + 0.04) < 0.16 - 0.35 * np.maximum(-ly - 0.05, 0)) & (ly > -0.24) & (ly < -0.12)
        wheels = ((np.abs(lx) - 0.3) ** 2 + (ly - 0.26) ** 2) < 0.11**2
        return (body | cabin) & ~window & ~wheels, window | wheels
    if subject == "boat":
        hull = (ly > 0.12) & (ly < 0.32) & (np.abs(lx) < 0.5 - (ly - 0.12) * 1.1)
        sail = (ly > -0.46) & (ly < 0.08) & (lx > 0.02) & (lx < 0.02 + (ly + 0.46) * 0.75)
        jib = (ly > -0.3) & (ly < 0.08) & (lx < -0.02) & (lx > -0.02 - (ly + 0.3) * 0.7)
        mast = (np.abs(lx) < 0.025) & (ly > -0.5) & (ly < 0.14)
        return (hull | sail | jib) & ~mast, mast
    if subject == "balloon":
        env = (lx / 0.36) ** 2 + ((ly + 0.1) / 0.4) ** 2 < 1
        string = (np.abs(lx) < 0.02) & (ly > 0.28) & (ly < 0.4)
        basket = (np.abs(lx) < 0.08) & (ly >= 0.4) & (ly < 0.5)
        return env, string | basket
    if subject == "star":  # five points: inside if on the centre's side of the folded edge point -> inner vertex
        r = np.sqrt(lx**2 + ly**2)
        sector = np.pi / 5
        ang = np.arctan2(lx, -ly)  # 0 towards the top point
        a = np.abs(((ang + sector) % (2 * sector)) - sector)  # 0 at a point, `sector` at an inner vertex
        ro, ri = 0.56, 0.3
        dx, dy = ri * np.cos(sector) - ro, ri * np.sin(sector)
        inside = dx * (r * np.sin(a)) - dy * (r * np.cos(a) - ro) >= 0
        return inside, none
    if subject == "fish":
        body = ((lx - 0.08) / 0.36) ** 2 + (ly / 0.25) ** 2 < 1
        tail = (lx < -0.2) & (lx > -0.5) & (np.abs(ly) < (-0.2 - lx) * 0.95 + 0.02)
        eye = (lx - 0.26) ** 2 + (ly + 0.04) ** 2 < 0.045**2
        return (body | tail) & ~eye, eye
    raise ValueError(f"unknown subject {subject!r}")


def _draw_subject(
    scene: Scene, rng: np.random.Generator, img: np.ndarray, t: np.ndarray, mask: np.ndarray | None = None
) -> None:
    f, h, w = img.shape[:3]
    x, y, s = _subject_path(scene, rng, t, w / h)
    cx, cy, sz = x * w - 0.5, y * h - 0.5, np.maximum(s * h, 2.0)  # pixels, (F,)
    # only the box the subject ever covers is evaluated (much smaller than the frame for most motions)
    ext = sz * 0.62 + 3 * h / 64
    x0, x1 = max(0, int(np.floor((cx - ext).min()))), min(w, int(np.ceil((cx + ext).max())) + 1)
    y0, y1 = max(0, int(np.floor((cy - ext).min()))), min(h, int(np.ceil((cy + ext).max())) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    px = np.arange(x0, x1, dtype=_F32)[None, None, :]
    py = np.arange(y0, y1, dtype=_F32)[None, :, None]
    flip = -1.0 if scene.motion == "left" else 1.0  # face the way it goes
    lx = (px - cx[:, None, None]) / sz[:, None, None] * flip  # (F, 1, w')
    ly = (py - cy[:, None, None]) / sz[:, None, None]  # (F, h', 1)
    lx, ly = np.broadcast_arrays(lx, ly)
    tt = t[:, None, None]
    subject = scene.subject or "ball"
    body, accent = _shape(subject, lx, ly, tt)
    # outline: the same shape, a pixel (at 64 px) bigger
    grow = 1.0 + (h / 64 * 1.6) / sz[:, None, None]
    obody, oacc = _shape(subject, lx / grow, ly / grow, tt)
    color = _rgb(PALETTE[scene.color or "red"])
    # a slightly darker rim: reads as an edge, yet blurring it into the body keeps the body's colour
    outline_col = _rgb((84, 84, 88)) if scene.color == "black" else color * 0.72
    accent_col = _rgb((96, 96, 100)) if scene.color == "black" else _rgb((34, 34, 40))
    if subject == "car":
        accent_col = _rgb((40, 40, 46))
    view = img[:, y0:y1, x0:x1]
    _paint(view, (obody | oacc) & ~body & ~accent, outline_col)
    _paint(view, accent, accent_col)
    _paint(view, body, color)
    if mask is not None:
        mask[:, y0:y1, x0:x1] |= obody | oacc | body | accent


# --- entry points -----------------------------------------------------------------------------------------------


def render(
    scene: Scene,
    rng: np.random.Generator,
    num_frames: int = 16,
    height: int = 64,
    width: int = 64,
    subject_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Draw one clip: (F, H, W, 3) uint8. Deterministic given the generator's state (it consumes random numbers).

    ``subject_mask``, an (F, H, W) bool array, receives the subject's pixels (outline included) where given; the clip
    is the same either way.
    """
    c = _Canvas(scene, rng, num_frames, height, width)
    img = np.ascontiguousarray(np.broadcast_to(_sky(c), (num_frames, height, width, 3)), dtype=_F32)  # (F,H,W,3)
    if scene.time == "night" and scene.weather in ("clear", "clouds"):
        _stars(c, img)
    _celestial(c, img)
    _weather_before_ground(c, img)
    _SETTING_PAINTERS[scene.setting](c, img)
    _weather_after_ground(c, img)
    # coarse world-fixed mottling of the ground, added after the weather so that snow, fog and night do not wash it
    # out: every setting keeps texture that camera moves visibly drag along
    img += np.where(c.v > c.horizon, 14.0 * c.smooth_texture(11, 9), 0.0)[..., None]
    if scene.subject is not None:
        _draw_subject(scene, rng, img, c.t, subject_mask)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def render_batch(
    scenes: list[Scene],
    seed: int,
    num_frames: int = 16,
    height: int = 64,
    width: int = 64,
    subject_masks: np.ndarray | None = None,
) -> np.ndarray:
    """(B, F, H, W, 3) uint8. Clip ``i`` depends only on ``(seed, i)`` and its scene. ``subject_masks``, a
    (B, F, H, W) bool array of zeros, receives each clip's subject pixels where given (see ``render``)."""
    out = np.empty((len(scenes), num_frames, height, width, 3), np.uint8)
    for i, scene in enumerate(scenes):
        m = None if subject_masks is None else subject_masks[i]
        out[i] = render(scene, np.random.default_rng((seed, i)), num_frames, height, width, m)
    return out


def make_dataset(
    n: int,
    seed: int,
    split: str = "train",
    num_frames: int = 16,
    height: int = 64,
    width: int = 64,
    subject_masks: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str], list[Scene]]:
    """``n`` sampled scenes, their clips (n, F, H, W, 3) uint8 and one caption each; deterministic per seed.
    ``subject_masks`` as in ``render_batch``."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, split) for _ in range(n)]
    captions = [caption(s, rng) for s in scenes]
    clips = render_batch(scenes, int(rng.integers(2**62)), num_frames, height, width, subject_masks)
    return clips, captions, scenes


# ----------------------------------------------------------------------------------------------------------------
# Language: captions, prompt parsing, vocabulary
# ----------------------------------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lower-case words; digits and punctuation are dropped ("4k" -> "k")."""
    return re.findall(r"[a-z]+", text.lower())


COLOR_WORDS: dict[str, tuple[str, ...]] = {c: (c,) for c in COLORS} | {"purple": ("purple", "violet")}
SUBJECT_WORDS: dict[str, tuple[str, ...]] = {
    "ball": ("ball", "sphere"),
    "cube": ("cube", "box", "block"),
    "bird": ("bird", "seagull"),
    "car": ("car",),
    "boat": ("boat", "sailboat"),
    "balloon": ("balloon", "hot air balloon"),
    "star": ("star",),
    "fish": ("fish",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big", "giant")}
VERBS: dict[str, str] = {
    "ball": "rolling",
    "cube": "sliding",
    "bird": "flying",
    "car": "driving",
    "boat": "sailing",
    "balloon": "floating",
    "star": "gliding",
    "fish": "swimming",
}
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": (
        "moving left",
        "moving to the left",
        "drifting left",
        "travels to the left",
        "{verb} to the left",
        "{verb} left",
        "heading left",
    ),
    "right": (
        "moving right",
        "moving to the right",
        "drifting right",
        "travels to the right",
        "{verb} to the right",
        "{verb} right",
        "heading right",
    ),
    "up": ("moving up", "rising", "floating upward", "going up", "moving upward", "{verb} upward"),
    "down": ("moving down", "falling", "dropping", "sinking", "descending", "going down", "{verb} downward"),
    "bounce": ("bouncing", "hopping", "bouncing up and down", "jumping", "hopping up and down"),
    "circle": ("circling", "moving in a circle", "going around in a circle", "looping around", "moving in circles"),
    "grow": ("growing", "getting bigger", "expanding", "growing larger"),
    "shrink": ("shrinking", "getting smaller", "shrinking away", "growing smaller"),
    "static": ("sitting still", "resting", "standing still", "staying still", "motionless"),
}
SETTING_PHRASES: dict[str, tuple[str, ...]] = {
    "mountains": (
        "over mountains",
        "over the mountains",
        "in the mountains",
        "above a mountain range",
        "over the peaks",
        "with mountains in the background",
    ),
    "hills": ("over the hills", "in the hills", "across green hills", "over hills", "on a hillside"),
    "ocean": ("over the ocean", "at sea", "over the sea", "above ocean waves", "on the ocean", "over the waves"),
    "beach": ("on a beach", "on the beach", "by the shore", "on a sandy beach", "along the coast"),
    "city": (
        "in a city",
        "through a city",
        "downtown",
        "over the city skyline",
        "in front of a skyline",
        "on a city street",
    ),
    "forest": ("in a forest", "through the forest", "in the woods", "over a pine forest", "among the trees"),
    "meadow": ("on green grass", "in a meadow", "on a grassy field", "in a green field", "on the grass"),
}
SETTING_NOUNS: dict[str, tuple[str, ...]] = {
    "mountains": ("mountains", "a mountain range", "mountain peaks", "the mountains"),
    "hills": ("green hills", "the hills", "a hillside"),
    "ocean": ("the ocean", "the sea", "ocean waves", "waves crashing on rocks"),
    "beach": ("a beach", "a sandy beach", "the shoreline"),
    "city": ("a city skyline", "the city", "downtown buildings"),
    "forest": ("a forest", "a pine forest", "the woods"),
    "meadow": ("a meadow", "a grassy field", "green grass", "a green meadow"),
}
TIME_PHRASES: dict[str, tuple[str, ...]] = {
    "dawn": ("at dawn", "at sunrise", "at daybreak", "in the early morning", "at first light"),
    "day": ("during the day", "at midday", "in broad daylight", "at noon", "in the daytime"),
    "sunset": ("at sunset", "at dusk", "during golden hour", "in the evening", "at twilight"),
    "night": ("at night", "at nighttime", "on a moonlit night", "in the dead of night"),
}
TIME_NOUNS: dict[str, tuple[str, ...]] = {
    "dawn": ("sunrise", "dawn", "daybreak"),
    "day": ("midday", "daytime", "a bright day"),
    "sunset": ("sunset", "dusk", "golden hour"),
    "night": ("night", "nighttime", "a moonlit night"),
}
CELESTIAL_PHRASES: dict[str, tuple[str, ...]] = {
    "sun_rising": ("as the sun rises", "with the rising sun", "the sun rising over the horizon"),
    "sun_setting": ("as the sun sets", "with the setting sun", "the sun sinking below the horizon"),
    "sun": ("under a bright sun", "with the sun high in the sky"),
    "moon": ("under a full moon", "with a bright moon"),
    "moon_rising": ("as the moon rises", "with a rising moon"),
    "none": (),
}
WEATHER_PHRASES: dict[str, tuple[str, ...]] = {
    "clear": ("under a clear sky", "with clear skies", "clear weather"),
    "clouds": (
        "clouds moving slowly",
        "with drifting clouds",
        "under a cloudy sky",
        "clouds drifting across the sky",
        "with white clouds",
        "cloudy",
    ),
    "rain": ("in the rain", "in heavy rain", "during a rainstorm", "while it rains", "rainy weather", "rain falling"),
    "snow": (
        "snow falling",
        "in the snow",
        "during a snowstorm",
        "with snow falling",
        "in heavy snowfall",
        "snowy weather",
    ),
    "fog": ("in thick fog", "in the fog", "in the mist", "misty", "foggy", "through the haze"),
}
WEATHER_LEADS: dict[str, tuple[str, ...]] = {  # weather as the sentence's subject: "snow falling on a forest"
    "clouds": ("clouds drifting over", "clouds moving slowly over"),
    "rain": ("rain falling on", "heavy rain over"),
    "snow": ("snow falling on", "snowfall over"),
    "fog": ("thick fog over", "mist over"),
}
CAMERA_PREFIX: dict[str, tuple[str, ...]] = {  # "<prefix> of <scene>"
    "static": ("static shot", "tripod shot", "locked off shot"),
    "aerial": ("aerial shot", "drone shot", "aerial view", "drone footage", "flyover"),
}
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {  # "<scene>, <phrase>"
    "static": ("static camera", "fixed camera", "static shot"),
    "pan_left": (
        "camera pans left",
        "panning left",
        "pan left",
        "the camera pans to the left",
        "slow pan to the left",
    ),
    "pan_right": (
        "camera pans right",
        "panning right",
        "pan right",
        "the camera pans to the right",
        "slow pan to the right",
    ),
    "tilt_up": ("camera tilts up", "tilting up", "tilt up", "the camera tilts upward"),
    "tilt_down": ("camera tilts down", "tilting down", "tilt down", "the camera tilts downward"),
    "zoom_in": ("zoom in", "camera zooms in", "camera slowly zooms in", "push in", "dolly in", "zooming in"),
    "zoom_out": ("zoom out", "camera zooms out", "camera slowly zooms out", "pull back", "dolly out", "zooming out"),
    "aerial": ("aerial shot", "drone shot", "flyover", "aerial view"),
}
STYLE_WORDS = (
    "cinematic",
    "4k",
    "beautiful",
    "dramatic lighting",
    "film grain",
    "cinematic lighting",
    "highly detailed",
    "slow motion",
    "timelapse",
    "soft light",
    "vivid colors",
    "photorealistic",
    "masterpiece",
    "hd",
)
STYLE_ADJECTIVES = ("cinematic", "beautiful", "dramatic", "stunning", "peaceful")
_FILLER = "a an the of with and over on in"


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """One random English description of the scene.

    Subject, colour and motion are always stated; time unless it is "day" (sometimes omitted: the default), weather
    unless it is "clear" (often omitted: the default), camera unless "static" (omitted half the time); the setting
    is omitted one time in ten. Word order, synonyms and style words vary.
    """
    time_phrase = _pick(rng, TIME_PHRASES[scene.time])
    if scene.time == "day" and rng.random() < 0.3:
        time_phrase = ""
    if scene.celestial != "none" and rng.random() < 0.25:
        time_phrase = ", ".join(p for p in (time_phrase, _pick(rng, CELESTIAL_PHRASES[scene.celestial])) if p)
    weather = "" if scene.weather == "clear" and rng.random() < 0.7 else _pick(rng, WEATHER_PHRASES[scene.weather])
    omit_setting = rng.random() < 0.1
    setting = "" if omit_setting else _pick(rng, SETTING_PHRASES[scene.setting])

    if scene.subject is not None:
        size = _pick(rng, SIZE_WORDS[scene.size]) + " " if scene.size and rng.random() < 0.5 else ""
        noun = _pick(rng, SUBJECT_WORDS[scene.subject])
        adjs = f"{size}{_pick(rng, COLOR_WORDS[scene.color or 'red'])}"
        subj = f"{'an' if adjs[0] in 'aeiou' else 'a'} {adjs} {noun}"
        motion = _pick(rng, MOTION_PHRASES[scene.motion or "static"]).replace("{verb}", VERBS[scene.subject])
        order = int(rng.integers(3))
        if order == 0:
            parts = [f"{subj} {motion} {setting} {time_phrase}", weather]
        elif order == 1:
            parts = [time_phrase, f"{subj} {motion} {setting}", weather]
        else:
            parts = [f"{subj} {motion} {setting}", weather, time_phrase]
    else:
        place = "" if omit_setting else _pick(rng, SETTING_NOUNS[scene.setting])
        order = int(rng.integers(3))
        if order == 0 or not place:
            adj = _pick(rng, STYLE_ADJECTIVES) + " " if rng.random() < 0.4 else ""
            tn = _pick(rng, TIME_NOUNS[scene.time])
            lead = f"a {adj}{tn}" if not tn.startswith("a ") else f"a {adj}{tn[2:]}"
            parts = [f"{lead} over {place}" if place else lead, weather]
        elif order == 1 or scene.weather == "clear":
            parts = [f"{place} {time_phrase}", weather]
        else:
            parts = [f"{_pick(rng, WEATHER_LEADS[scene.weather])} {place} {time_phrase}"]
    parts = [" ".join(p.split()) for p in parts]
    text = ", ".join(p for p in parts if p)

    cam = scene.camera
    if cam != "static" or rng.random() < 0.5:
        starts_with_preposition = text.split(" ", 1)[0] in ("at", "in", "during", "on", "under", "as", "with")
        if cam in CAMERA_PREFIX and not starts_with_preposition and rng.random() < 0.5:
            text = f"{_pick(rng, CAMERA_PREFIX[cam])} of {text}"
        else:
            text = f"{text}, {_pick(rng, CAMERA_PHRASES[cam])}"
    r = rng.random()
    if r < 0.25:
        text = f"{_pick(rng, STYLE_WORDS)}, {text}"
    elif r < 0.55:
        k = 1 + int(rng.random() < 0.4)
        styles = [STYLE_WORDS[i] for i in rng.choice(len(STYLE_WORDS), k, replace=False)]
        text = f"{text}, {', '.join(styles)}"
    return text[0].upper() + text[1:]


def _template_texts() -> list[str]:
    tables: list[dict[str, tuple[str, ...]]] = [
        COLOR_WORDS,
        SUBJECT_WORDS,
        SIZE_WORDS,
        MOTION_PHRASES,
        SETTING_PHRASES,
        SETTING_NOUNS,
        TIME_PHRASES,
        TIME_NOUNS,
        CELESTIAL_PHRASES,
        WEATHER_PHRASES,
        WEATHER_LEADS,
        CAMERA_PREFIX,
        CAMERA_PHRASES,
    ]
    texts = [p for table in tables for options in table.values() for p in options]
    texts += list(VERBS.values()) + list(STYLE_WORDS) + list(STYLE_ADJECTIVES) + [_FILLER]
    return [re.sub(r"\{[a-z_]+\}", " ", s) for s in texts]


def vocabulary() -> list[str]:
    """Every word any caption can contain, sorted: the text encoder's vocabulary."""
    return sorted({w for s in _template_texts() for w in tokenize(s)})


# --- parsing: free text -> attributes, with the same synonym tables ------------------------------------------------

_TIME_WORDS = {
    "dawn": "dawn",
    "sunrise": "dawn",
    "daybreak": "dawn",
    "morning": "dawn",
    "day": "day",
    "midday": "day",
    "noon": "day",
    "daylight": "day",
    "daytime": "day",
    "sunset": "sunset",
    "dusk": "sunset",
    "evening": "sunset",
    "twilight": "sunset",
    "night": "night",
    "nighttime": "night",
    "moonlit": "night",
    "midnight": "night",
    "starry": "night",
}
_SETTING_WORDS = {
    "mountains": "mountains",
    "mountain": "mountains",
    "peaks": "mountains",
    "hills": "hills",
    "hill": "hills",
    "hillside": "hills",
    "ocean": "ocean",
    "sea": "ocean",
    "waves": "ocean",
    "beach": "beach",
    "shore": "beach",
    "coast": "beach",
    "sandy": "beach",
    "shoreline": "beach",
    "city": "city",
    "skyline": "city",
    "downtown": "city",
    "street": "city",
    "buildings": "city",
    "forest": "forest",
    "woods": "forest",
    "trees": "forest",
    "pine": "forest",
    "meadow": "meadow",
    "grass": "meadow",
    "grassy": "meadow",
    "field": "meadow",
}
_WEATHER_WORDS = {
    "clear": "clear",
    "cloud": "clouds",
    "clouds": "clouds",
    "cloudy": "clouds",
    "overcast": "clouds",
    "rain": "rain",
    "rains": "rain",
    "rainy": "rain",
    "rainstorm": "rain",
    "raining": "rain",
    "snow": "snow",
    "snowy": "snow",
    "snowfall": "snow",
    "snowstorm": "snow",
    "snowing": "snow",
    "fog": "fog",
    "foggy": "fog",
    "mist": "fog",
    "misty": "fog",
    "haze": "fog",
    "hazy": "fog",
}
_SUBJECT_WORDS = {w: s for s, ws in SUBJECT_WORDS.items() for w in ws if " " not in w}
_COLOR_WORDS = {w: c for c, ws in COLOR_WORDS.items() for w in ws}
_SIZE_WORDS = {w: s for s, ws in SIZE_WORDS.items() for w in ws}
_MOTION_WORDS: list[tuple[str, tuple[str, ...]]] = [  # checked in order; first hit wins
    ("bounce", ("bouncing", "bounces", "bounce", "hopping", "hops", "jumping", "jumps")),
    ("circle", ("circle", "circles", "circling", "looping", "loop")),
    ("shrink", ("shrinking", "shrinks", "smaller", "shrink")),  # before grow: "growing smaller"
    ("grow", ("growing", "grows", "bigger", "larger", "expanding")),
    ("left", ("left",)),
    ("right", ("right",)),
    ("up", ("up", "upward", "upwards", "rising", "rises", "ascending", "climbing")),
    ("down", ("down", "downward", "downwards", "falling", "falls", "dropping", "sinking", "descending")),
    ("static", ("still", "motionless", "resting", "stationary", "static")),
]


def _find(tokens: list[str], phrase: str) -> int:
    words = phrase.split()
    for i in range(len(tokens) - len(words) + 1):
        if tokens[i : i + len(words)] == words:
            return i
    return -1


def _consume(tokens: list[str], phrases: tuple[str, ...] | list[str]) -> bool:
    """Blank out the first phrase found (so later stages do not read its words again)."""
    for p in phrases:
        i = _find(tokens, p)
        if i >= 0:
            for j in range(i, i + len(p.split())):
                tokens[j] = ""
            return True
    return False


_CAMERA_PARSE: list[tuple[str, tuple[str, ...]]] = [
    (
        "pan_left",
        ("pans to the left", "pan to the left", "pans left", "panning left", "pan left", "panning to the left"),
    ),
    (
        "pan_right",
        ("pans to the right", "pan to the right", "pans right", "panning right", "pan right", "panning to the right"),
    ),
    ("tilt_up", ("tilts upward", "tilts up", "tilting up", "tilt up", "tilting upward")),
    ("tilt_down", ("tilts downward", "tilts down", "tilting down", "tilt down", "tilting downward")),
    ("zoom_in", ("zooms in", "zoom in", "zooming in", "push in", "pushes in", "dolly in", "zoom into")),
    (
        "zoom_out",
        ("zooms out", "zoom out", "zooming out", "pull back", "pulls back", "pulling back", "dolly out", "pull out"),
    ),
    ("aerial", ("aerial", "drone", "flyover", "fly over", "bird s eye", "birds eye")),
    ("static", ("static camera", "static shot", "fixed camera", "tripod", "locked off", "still camera")),
]
_CELESTIAL_PARSE: list[tuple[str, tuple[str, ...]]] = [
    ("sun_rising", ("sun rises", "rising sun", "sun rising", "sun coming up")),
    ("sun_setting", ("sun sets", "setting sun", "sun setting", "sun sinking below", "sun sinking", "sun going down")),
    ("moon_rising", ("moon rises", "rising moon", "moon rising", "moonrise")),
    ("moon", ("full moon", "bright moon", "moon")),
    ("sun", ("bright sun", "sun high", "sun")),
]


def parse_prompt(text: str) -> dict[str, str]:
    """The world attributes a free-form prompt mentions (only those it mentions), via the caption synonym tables.

    Multi-word phrases are consumed first (camera moves, then sun/moon, then weather with its own verbs such as
    "snow falling"), so their words cannot be misread as a subject motion. Colour and size bind to the subject noun
    they precede; motion is only read when there is a subject.
    """
    tokens = tokenize(text)
    out: dict[str, str] = {}
    for value, phrases in _CAMERA_PARSE:
        if _consume(tokens, phrases):
            out["camera"] = value
            break
    for value, phrases in _CELESTIAL_PARSE:
        if _consume(tokens, phrases):
            out["celestial"] = value
            break
    # weather nouns swallow their own verbs: "clouds moving slowly", "snow falling", "falling snow", "drifting clouds"
    for i, tok in enumerate(tokens):
        if tok in _WEATHER_WORDS:
            out.setdefault("weather", _WEATHER_WORDS[tok])
            for j in (i + 1, i + 2):
                if j < len(tokens) and tokens[j] in ("moving", "drifting", "falling", "rolling", "pouring", "slowly"):
                    tokens[j] = ""
            if i > 0 and tokens[i - 1] in ("falling", "drifting") and (i < 2 or tokens[i - 2] not in _SUBJECT_WORDS):
                tokens[i - 1] = ""
    for phrase, value in (("first light", "dawn"), ("golden hour", "sunset"), ("early morning", "dawn")):
        if _consume(tokens, (phrase,)):
            out.setdefault("time", value)
    for tok in tokens:
        if tok in _TIME_WORDS:
            out.setdefault("time", _TIME_WORDS[tok])
    _consume(tokens, ("rolling hills",))  # "rolling" here is the hills, not a motion
    if "setting" not in out:
        beachy = [t for t in tokens if t in _SETTING_WORDS and _SETTING_WORDS[t] == "beach"]
        for tok in beachy or tokens:
            if tok in _SETTING_WORDS:
                out["setting"] = _SETTING_WORDS[tok]
                break
    for i, tok in enumerate(tokens):
        if tok in _SUBJECT_WORDS:
            out["subject"] = _SUBJECT_WORDS[tok]
            for j in range(max(0, i - 3), i):
                if tokens[j] in _COLOR_WORDS:
                    out["color"] = _COLOR_WORDS[tokens[j]]
                if tokens[j] in _SIZE_WORDS:
                    out["size"] = _SIZE_WORDS[tokens[j]]
            tokens[i] = ""
            break
    if "subject" in out:
        words = set(tokens)
        for value, keys in _MOTION_WORDS:
            if words & set(keys):
                out["motion"] = value
                break
        else:
            if "rolling" in words:  # a ball "rolling" with no direction hops along
                out["motion"] = "bounce"
    return out


def still_caption(text: str) -> str | None:
    """``text`` with its subject's motion said as "sitting still" (lower-case words); None when it names no subject,
    or one already still. Motion guidance (``sampling.sample``) steers a clip away from it.

    The camera's phrases are left alone ("panning left" is the camera, not the subject), so the two texts differ only
    in the subject's motion.

    >>> still_caption("A red ball bouncing over the hills, the camera panning left")
    'a red ball sitting still over the hills the camera panning left'
    >>> still_caption("a sunrise over mountains, clouds moving slowly") is None
    True
    """
    motion = parse_prompt(text).get("motion")
    if motion in (None, "static"):
        return None
    words = tokenize(text)
    camera: set[int] = set()
    for _, phrases in _CAMERA_PARSE:
        for p in phrases:
            if (i := _find(words, p)) >= 0:
                camera.update(range(i, i + len(p.split())))
    assert motion is not None
    said = {p.replace("{verb}", v) for p in MOTION_PHRASES[motion] for v in VERBS.values()}
    for p in sorted(said, key=lambda p: -len(p.split())):  # the longest first: "moving to the left", not "left"
        n = len(p.split())
        if (i := _find(words, p)) >= 0 and not camera & set(range(i, i + n)):
            return " ".join([*words[:i], "sitting", "still", *words[i + n :]])
    keys = dict(_MOTION_WORDS)[motion]
    hits = [i for i, w in enumerate(words) if w in keys and i not in camera]
    if not hits:  # read from a word the tables do not say alone ("rolling": a ball hops along)
        return None
    return " ".join("still" if i == hits[0] else w for i, w in enumerate(words) if i not in hits[1:])


def _check_heldout_pairs() -> None:
    """Import-time guard: held-out pairs are valid values and leave every value a training partner."""
    for (a, b), pairs in HELDOUT_PAIRS.items():
        for x, y in pairs:
            assert x in ATTRIBUTES[a] and y in ATTRIBUTES[b], (a, b, x, y)
        for x in ATTRIBUTES[a]:
            assert sum((x, y) in pairs for y in ATTRIBUTES[b]) < len(ATTRIBUTES[b]), (a, x)
        for y in ATTRIBUTES[b]:
            assert sum((x, y) in pairs for x in ATTRIBUTES[a]) < len(ATTRIBUTES[a]), (b, y)


_check_heldout_pairs()
