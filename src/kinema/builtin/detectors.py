"""Frame-only detectors for the built-in world: what does a clip show? Used to score prompt adherence.

Every detector takes uint8 frames ``(F, H, W, 3)`` and returns one attribute value in the vocabulary of
:mod:`kinema.builtin.world`. They are meant for clips *generated* by the built-in model, so they rely on coarse,
blur- and noise-tolerant cues only, and they are vectorised (all of them on a 16x64x64 clip: ~15-25 ms on one
busy CPU core):

- **subject colour**: pixels near one of the world's palette colours (the world keeps backgrounds 70+ RGB units
  from the saturated colours; white and black get a tighter threshold because snow and night scenery come within
  ~30), counted as solid 3x3 blocks so snowflakes, stars and single noisy pixels do not count; the colour with the
  most blocks wins (a saturated colour may also win on plain pixel count when blur has eaten a thin subject's
  blocks), ``None`` if there is too little of any.
- **motion**: the per-frame centroid and area of that colour's pixels, classified from net displacement, ranges,
  and size ratio (grow/shrink: size ratio > 1.5; left/right/up/down: net move > 25% of the frame; circle: both
  ranges > 20%; bounce: vertical range only).
- **camera**: a global scale + translation between the first and last third of the clip. Each third is reduced to
  its darkest value per pixel (rain streaks and flakes are bright and brief), pixels the subject touched
  are dropped, both are block-averaged to ~32 rows and locally contrast-normalised, and two families are searched
  exhaustively by normalised cross-correlation: translations (static, pans, tilts) and zooms about the centre with
  a vertical slide (zooms, aerial). Conventions match the world: ``pan_left`` = content slides *right*,
  ``tilt_up`` = content slides *down*, ``zoom_in`` = content grows, ``aerial`` = content grows *and* slides up (a
  forward, descending drone move).
- **time and weather**: a small feature vector (sky colours, haze, streak / speckle / flicker energy, cloud cover)
  classified by nearest neighbours among reference clips rendered from the world once per process (a few
  seconds; clean and blurred + noisy), so the references track the renderer if it changes.

:func:`score` compares detections with a scene and documents the equivalences used.
"""

from __future__ import annotations

import functools

import numpy as np

from . import world

__all__ = [
    "detect_all",
    "detect_camera",
    "detect_motion",
    "score_detected",
    "detect_subject_color",
    "detect_time",
    "detect_weather",
    "score",
]

_F32 = np.float32
_COLOR_NAMES = tuple(world.PALETTE)
_PALETTE = np.array([world.PALETTE[c] for c in _COLOR_NAMES], _F32)  # (9, 3)
#: A pixel "is" a palette colour when within this RGB distance: the world keeps backgrounds 70+ away from the
#: saturated colours, but only ~30 from white (snow, foam) and black (night silhouettes), which get a tighter one.
_MATCH_DIST = 55.0
_MATCH_DIST_NEUTRAL = 30.0
_MATCH_DIST2 = np.array(
    [(_MATCH_DIST_NEUTRAL if c in ("white", "black") else _MATCH_DIST) ** 2 for c in _COLOR_NAMES], _F32
)


def _as_float(frames: np.ndarray) -> np.ndarray:
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {x.shape}")
    return x.astype(_F32)


def _box(x: np.ndarray, k: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Mean over a k x k window (same size, edges replicated) via cumulative sums: O(1) per pixel."""
    r = k // 2
    out = np.asarray(x, _F32)
    for ax in axes:
        ax = ax % out.ndim
        pad = [(0, 0)] * out.ndim
        pad[ax] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=ax, dtype=_F32)
        n = out.shape[ax]
        hi = c[(slice(None),) * ax + (slice(k, k + n),)]
        lo = c[(slice(None),) * ax + (slice(0, n),)]
        out = (hi - lo) * _F32(1.0 / k)
    return out


def _count3(m: np.ndarray) -> np.ndarray:
    """How many of the 3 x 3 neighbours (self included) are set, for a boolean (F, H, W) mask: (F, H, W) uint8."""
    f, h, w = m.shape
    p = np.zeros((f, h + 2, w + 2), np.uint8)
    p[:, 1:-1, 1:-1] = m
    out = np.zeros((f, h, w), np.uint8)
    for dy in range(3):
        for dx in range(3):
            out += p[:, dy : dy + h, dx : dx + w]
    return out


# ----------------------------------------------------------------------------------------------------------------
# Subject: colour, mask, motion
# ----------------------------------------------------------------------------------------------------------------


def _palette_labels(x: np.ndarray) -> np.ndarray:
    """(F, H, W) index of the nearest palette colour within :data:`_MATCH_DIST`, else -1."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    labels = np.full(x.shape[:3], -1, np.int64)
    for i, (pr, pg, pb) in enumerate(_PALETTE):  # palette colours are far apart: at most one can match
        d2 = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2  # (F, H, W)
        labels[d2 < _MATCH_DIST2[i]] = i
    return labels


def _subject(x: np.ndarray) -> tuple[str | None, np.ndarray]:
    """(colour name or None, (F, H, W) mask of that colour's pixels).

    Evidence is the number of solid k x k blocks of a colour (so snowflakes, stars and stray noisy pixels do not
    count), ignoring frames where the colour covers a third of the picture (that is background). Thin subjects
    can lose their blocks to blur, so a saturated colour may also win on plain pixel count; white and black may
    not, because snow, foam and night scenery come close to them.
    """
    f, h, w = x.shape[:3]
    labels = _palette_labels(x)
    k = max(3, round(3 * h / 64))  # a small subject is ~10 px wide at 64 px
    cores = np.zeros(len(_COLOR_NAMES))
    pixels = np.zeros(len(_COLOR_NAMES))
    for ci in np.unique(labels[labels >= 0]):
        m = labels == ci
        frac = m.mean(axis=(1, 2))  # (F,)
        core = (_count3(m) >= 8) if k == 3 else (_box(m, k) > 0.85)  # solid blocks (8 of 9 at 64 px)
        cores[ci] = (core.sum(axis=(1, 2)) * (frac < 0.3)).sum()
        if _COLOR_NAMES[ci] not in ("white", "black"):
            pixels[ci] = (m.sum(axis=(1, 2)) * (frac < 0.3)).sum()
    scale = f * (h * w) / 4096  # per-frame counts are quoted at 64 x 64
    best = int(cores.argmax())
    if cores[best] < 1.5 * scale:
        best = int(pixels.argmax())
        if pixels[best] < 6 * scale:
            return None, np.zeros((f, h, w), bool)
    return _COLOR_NAMES[best], labels == best


def detect_subject_color(frames: np.ndarray) -> str | None:
    """The subject's palette colour, or ``None`` when no subject-sized patch of any palette colour is present."""
    return _subject(_as_float(frames))[0]


def _trajectory(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centroid x, y (fractions of width and height) and size (sqrt area / height); NaN where absent."""
    f, h, w = mask.shape
    area = mask.sum(axis=(1, 2)).astype(np.float64)  # (F,)
    ys, xs = np.arange(h), np.arange(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (mask.sum(axis=1) * xs).sum(-1) / area / w
        cy = (mask.sum(axis=2) * ys).sum(-1) / area / h
    present = area >= max(2.0, 0.0008 * h * w)
    size = np.sqrt(area) / h
    nan = np.full(f, np.nan)
    return np.where(present, cx, nan), np.where(present, cy, nan), np.where(present, size, nan)


def _motion_from_mask(mask: np.ndarray) -> str:
    cx, cy, size = _trajectory(mask)
    ok = ~np.isnan(cx)
    if ok.sum() < 3:
        return "static"
    idx = np.flatnonzero(ok)
    n = max(1, min(3, len(idx) // 4))
    first, last = idx[:n], idx[-n:]
    x, y = cx[ok], cy[ok]
    dx = float(np.median(cx[last]) - np.median(cx[first]))
    dy = float(np.median(cy[last]) - np.median(cy[first]))
    ratio = float(np.median(size[last]) / max(np.median(size[first]), 1e-6))
    xr = float(np.percentile(x, 95) - np.percentile(x, 5))
    yr = float(np.percentile(y, 95) - np.percentile(y, 5))
    if ratio > 1.5 and xr < 0.15:
        return "grow"
    if ratio < 1 / 1.5 and xr < 0.15:
        return "shrink"
    if abs(dx) > 0.25 and abs(dx) > abs(dy):
        return "right" if dx > 0 else "left"
    if abs(dy) > 0.25:
        return "down" if dy > 0 else "up"
    if xr > 0.2 and yr > 0.2:
        return "circle"
    if yr > 0.12 and xr < 0.15:
        return "bounce"
    return "static"


def detect_motion(frames: np.ndarray) -> str | None:
    """The subject's screen-space motion (``left`` ... ``static``), or ``None`` when there is no subject."""
    color, mask = _subject(_as_float(frames))
    return None if color is None else _motion_from_mask(mask)


# ----------------------------------------------------------------------------------------------------------------
# Camera
# ----------------------------------------------------------------------------------------------------------------


def _warp_matrices(n: int, scales: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(S, D, n, n) bilinear resampling matrices: row x samples ``c + (x - c - shifts[d]) / scales[s]``.

    A scale + translation is separable, so warping an image is ``My @ img @ Mx.T``; rows whose source falls outside
    the image are all zero (and the warped validity map says so).
    """
    c = (n - 1) / 2
    x = np.arange(n, dtype=np.float64)
    src = c + (x[None, None, :] - c - shifts[None, :, None]) / scales[:, None, None]  # (S, D, n)
    inside = (src >= 0) & (src <= n - 1)
    i0 = np.clip(np.floor(src).astype(np.int64), 0, n - 2)
    fr = np.clip(src - i0, 0, 1)
    m = np.zeros(src.shape + (n,), _F32)
    np.put_along_axis(m, i0[..., None], np.where(inside, 1 - fr, 0)[..., None].astype(_F32), -1)
    hi = np.take_along_axis(m, i0[..., None] + 1, -1) + np.where(inside, fr, 0)[..., None]
    np.put_along_axis(m, i0[..., None] + 1, hi.astype(_F32), -1)
    return m


def _ncc_shifts(
    cand: np.ndarray, cw: np.ndarray, b: np.ndarray, wb: np.ndarray, sy: np.ndarray, sx: np.ndarray
) -> np.ndarray:
    """Normalised correlation of ``b`` with every candidate image shifted by every whole-pixel (dy, dx): (S, Dy, Dx).

    ``cand`` (S, h, w) are (already scaled) versions of the first window with validity ``cw``; shifting content by
    (dy, dx) is slicing, so the search is a few vectorised passes instead of one warp per candidate. Pixels missing
    in either image do not count; too small an overlap scores -inf (so huge shifts over a flat sky cannot win).
    """
    n_s, h, w = cand.shape
    c = np.zeros((n_s, len(sy), h, w), _F32)
    ccw = np.zeros((n_s, len(sy), h, w), _F32)
    for iy, dy in enumerate(sy.astype(int)):
        dst, src = (slice(dy, h), slice(0, h - dy)) if dy >= 0 else (slice(0, h + dy), slice(-dy, h))
        c[:, iy, dst] = cand[:, src]
        ccw[:, iy, dst] = cw[:, src]
    out = np.full((n_s, len(sy), len(sx)), -np.inf)
    min_overlap = 0.45 * float(wb.sum())
    for ix, dx in enumerate(sx.astype(int)):
        dst, src = (slice(dx, w), slice(0, w - dx)) if dx >= 0 else (slice(0, w + dx), slice(-dx, w))
        cx, wx = c[..., src], ccw[..., src] * wb[:, dst]
        bb = b[:, dst]
        pa = cx * wx
        corr = (pa * bb).sum((-2, -1)) / np.sqrt((pa * cx).sum((-2, -1)) * (wx * (bb * bb)).sum((-2, -1)) + 1e-6)
        out[:, :, ix] = np.where(wx.sum((-2, -1)) >= min_overlap, corr, -np.inf)
    return out


def _downsample(img: np.ndarray, wgt: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted block means to about ``size`` rows (and proportionally many columns)."""
    h, w = img.shape
    fy = max(1, h // size)
    fx = fy
    hh, ww = h // fy, w // fx
    i = (img * wgt)[: hh * fy, : ww * fx].reshape(hh, fy, ww, fx).sum((1, 3))
    n = wgt[: hh * fy, : ww * fx].reshape(hh, fy, ww, fx).sum((1, 3))
    full = (n >= 0.75 * fy * fx).astype(_F32)
    img = (i / np.maximum(n, 1e-6)).astype(_F32)
    # local contrast normalisation: every textured spot counts about the same, so one bright moving thing (a
    # rising moon, the sun's glow) cannot outweigh the dim but static world; holes are filled before filtering
    k = 5
    fill = _box(img * full, k) / np.maximum(_box(full, k), 1e-3)
    img = np.where(full > 0, img, fill)
    mean = _box(img, k)
    var = np.maximum(_box(img * img, k) - mean * mean, 0.0)
    return ((img - mean) / np.sqrt(var + 16.0)).astype(_F32), full


def _global_motion(gray: np.ndarray, keep: np.ndarray) -> tuple[float, float, float]:
    """(scale, dx, dy) mapping the first third of the clip onto the last third, extrapolated to the whole clip.

    Search over scale x translation on low-order temporal statistics of the two windows (which remove rain
    streaks and flakes; pixels the subject touches are ignored), after local contrast normalisation. dx, dy are
    in frame heights; positive dx = content moves right, positive dy = content moves down.
    """
    f, h, w = gray.shape
    k = max(1, f // 3)

    def window(sl: slice) -> tuple[np.ndarray, np.ndarray]:
        # the darkest value of each pixel over the window: rain streaks and snowflakes are bright and brief, so it is
        # the world behind them. The second darkest served at 64x64, but at 128x128 a streak or flake covers a pixel
        # in two frames of five often enough that rain and snow read as a tilt (real held-out clips: camera right
        # 0.67 to 0.72 of the time, against 0.95 to 0.97 with the darkest; 64x64 unchanged). Pixels the subject
        # touched are dropped.
        g = gray[sl]
        low = g.min(axis=0)  # (H, W)
        ok = np.asarray(keep[sl].all(axis=0))
        return np.where(ok, low, 0.0).astype(_F32), ok.astype(_F32)

    a, wa = window(slice(0, k))
    b, wb = window(slice(f - k, f))
    a2, wa2 = _downsample(a, wa, 32)
    b2, wb2 = _downsample(b, wb, 32)
    h2, w2 = a2.shape
    sx = np.arange(-round(0.22 * w2), round(0.22 * w2) + 1)
    sy = np.arange(-round(0.22 * h2), round(0.22 * h2) + 1)
    # Two families, as in the world: translations (static, pans, tilts) and zooms about the centre that may also
    # slide vertically (zooms, aerial), each searched on ~32 rows in whole pixels. The better correlation wins,
    # so a tilt cannot be explained away by a spurious scale, nor a zoom by a pan.
    tr = _ncc_shifts(a2[None], wa2[None], b2, wb2, sy, sx)[0]  # (Dy, Dx)
    iy, ix = np.unravel_index(int(np.argmax(tr)), tr.shape)
    ct, dx, dy = float(tr[iy, ix]), float(sx[ix]), float(sy[iy])
    # zooms are always searched as magnifications (zoom-outs by magnifying the *last* window onto the first), so
    # the compared area never shrinks to the middle of the frame
    zooms = np.exp(np.linspace(0.1, 0.35, 8))
    mx = _warp_matrices(w2, zooms, np.zeros(1))[:, 0].transpose(0, 2, 1)  # (S, w, w)
    my = _warp_matrices(h2, zooms, np.zeros(1))[:, 0]  # (S, h, h)
    syz = sy[np.abs(sy) <= 0.16 * h2]
    cz, sz, dyz = -np.inf, 1.0, 0.0
    for src, wsrc, dst, wdst, sign in ((a2, wa2, b2, wb2, 1), (b2, wb2, a2, wa2, -1)):
        scaled = my @ (src * wsrc) @ mx
        valid = (my @ wsrc @ mx > 0.97).astype(_F32)
        zm = _ncc_shifts(scaled, valid, dst, wdst, syz, np.zeros(1))[..., 0]  # (S, Dy)
        si, iz = np.unravel_index(int(np.argmax(zm)), zm.shape)
        if zm[si, iz] > cz:
            # a = zoom_s(b) shifted by dy  <=>  b = zoom_(1/s)(a) shifted by -dy / s
            z, d = float(zooms[si]), float(syz[iz])
            cz, sz, dyz = float(zm[si, iz]), (z if sign > 0 else 1 / z), (d if sign > 0 else -d / z)
    extra = (f - 1) / max(f - k, 1)  # the window centres are (f - k) frames apart
    if cz > ct + 0.01:
        return sz**extra, 0.0, dyz / h2 * extra
    return 1.0, dx / h2 * extra, dy / h2 * extra


def _camera_from(gray: np.ndarray, keep: np.ndarray) -> str:
    s, dx, dy = _global_motion(gray, keep)
    ls = np.log(s)
    if ls > np.log(1.15):
        return "aerial" if dy < -0.06 else "zoom_in"
    if ls < -np.log(1.15):
        return "zoom_out"
    if max(abs(dx), abs(dy)) < 0.08:
        return "static"
    if abs(dx) >= abs(dy):
        return "pan_left" if dx > 0 else "pan_right"
    return "tilt_up" if dy > 0 else "tilt_down"


def _gray(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], _F32)  # (F, H, W)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    return _box(mask.astype(_F32), 2 * r + 1) > 0.5 / (2 * r + 1) ** 2


def detect_camera(frames: np.ndarray) -> str:
    """Global background motion: static, pan_left/right, tilt_up/down, zoom_in/out, or aerial (see module doc)."""
    x = _as_float(frames)
    _, mask = _subject(x)
    return _camera_from(_gray(x), ~_dilate(mask, 2))


# ----------------------------------------------------------------------------------------------------------------
# Time of day and weather
# ----------------------------------------------------------------------------------------------------------------


def _scene_features(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Sky colours, haze, streak/speckle energy and cloud texture: one vector per clip."""
    f, h, w = x.shape[:3]
    g = _box(_gray(x), 3)  # pre-blurred, so clean and noisy clips look alike (streaks and flakes survive)
    top = slice(0, max(2, round(0.2 * h)))
    mid = slice(round(0.2 * h), max(round(0.2 * h) + 1, round(0.34 * h)))
    feats: list[float] = []
    for band in (top, mid):
        px = x[:, band][keep[:, band]]
        px = px if len(px) else x[:, band].reshape(-1, 3)
        feats.extend(np.median(px, axis=0) / 64.0)
    # haze: overall contrast and colourfulness
    gm = g.mean(axis=0)
    feats.append(float(np.std(gm)) / 16.0)
    r, gg, b = x[..., 0], x[..., 1], x[..., 2]
    sat = np.maximum(np.maximum(r, gg), b) - np.minimum(np.minimum(r, gg), b)
    feats.append(float(np.mean(sat)) / 32.0)
    # streaks and speckles: fine detail that changes from frame to frame in the sky band
    gs = g[:, top]
    hp = gs - _box(gs, 5)
    feats.append(float(np.mean(np.abs(np.diff(gs, axis=0)))) / 4.0)  # temporal flicker
    feats.append(float(np.mean(np.abs(np.diff(gs, axis=2)))) / 4.0)  # horizontal detail (vertical streaks)
    feats.append(float(np.mean(np.abs(np.diff(gs, axis=1)))) / 4.0)  # vertical detail
    feats.append(float(np.mean(hp > 12)) * 10)  # bright speckles
    # clouds: smooth within-row variation of the sky (large blobs), flakes and streaks blurred away
    sm = _box(g[:, : max(2, round(0.42 * h))].mean(axis=0), 7, axes=(-2, -1))
    feats.append(float(np.median(np.std(sm, axis=1))) / 4.0)
    # ... and how much of the upper sky departs from its row's typical value (cloud cover), and its colourfulness
    up = _box(g[:, : max(2, round(0.3 * h))], 5)  # (F, h', W)
    dev = np.abs(up - np.median(up, axis=-1, keepdims=True))
    feats.append(float(np.mean(dev > 6)) * 4)
    feats.append(float(np.mean(sat[:, top])) / 32.0)
    return np.asarray(feats, _F32)


def _features(x: np.ndarray) -> np.ndarray:
    _, mask = _subject(x)
    return _scene_features(x, ~_dilate(mask, 2))


def _degrade(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3x3 box blur per frame plus Gaussian noise (sigma 8): what a small generator's output roughly looks like."""
    b = _box(clip.astype(_F32).transpose(0, 3, 1, 2), 3).transpose(0, 2, 3, 1)
    return np.clip(b + rng.normal(0, 8, b.shape), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _calibration(
    num_frames: int = 16, height: int = 64, width: int = 64
) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray, np.ndarray]:
    """Reference feature vectors for every (time, weather), from rendered world clips (clean and degraded).

    Returns (classes, labels (N,) class index per sample, samples (N, D), per-feature scale (D,)). Settings and
    cameras rotate through the samples so each class sees the variety it will meet. Runs once per process and
    clip shape (a few seconds), at the shape of the clips being judged.
    """
    rng = np.random.default_rng(1234)
    classes = [(t, wth) for t in world.TIMES for wth in world.WEATHERS]
    rows: list[np.ndarray] = []
    labels: list[int] = []
    for ci, (t, wth) in enumerate(classes):
        for i in range(6):
            celestial = world.CELESTIAL_FOR_TIME[t][i % len(world.CELESTIAL_FOR_TIME[t])]
            setting = world.SETTINGS[(i + 2 * ci) % len(world.SETTINGS)]
            camera = world.CAMERAS[(i + 3 * ci) % len(world.CAMERAS)]
            clip = world.render(world.Scene(t, celestial, setting, wth, camera), rng, num_frames, height, width)
            rows += [_features(clip.astype(_F32)), _features(_degrade(clip, rng).astype(_F32))]
            labels += [ci, ci]
    samples = np.asarray(rows, _F32)
    lab = np.asarray(labels)
    cent = np.stack([samples[lab == ci].mean(0) for ci in range(len(classes))])
    scale = (samples - cent[lab]).std(axis=0) + 0.05
    return classes, lab, samples, scale.astype(_F32)


_N_COLOR_FEATS = 6  # the first features are sky colours; the rest describe texture and change


def _classify(feat: np.ndarray, shape: tuple[int, ...]) -> tuple[str, str]:
    """(time, weather) by nearest neighbours among the calibration samples.

    Time: the 5 nearest over all features vote. Weather: among samples of that time, the 5 nearest vote, with the
    colour features down-weighted, so a sky greyed by clouds is not called snow on colour alone.
    """
    classes, lab, samples, scale = _calibration(*shape[:3])
    z = (samples - feat) / scale  # (N, D)
    d_all = (z**2).sum(-1)
    times = [classes[i][0] for i in lab[np.argsort(d_all)[:5]]]
    time = max(set(times), key=lambda t: (times.count(t), -times.index(t)))
    same = np.flatnonzero([classes[i][0] == time for i in lab])
    wz = z[same]
    d = (wz[:, _N_COLOR_FEATS:] ** 2).sum(-1) + 0.25 * (wz[:, :_N_COLOR_FEATS] ** 2).sum(-1)
    near = [classes[lab[same[i]]][1] for i in np.argsort(d)[:5]]
    weather = max(set(near), key=lambda w: (near.count(w), -near.index(w)))
    return time, weather


def detect_time(frames: np.ndarray) -> str:
    """Time of day from the sky: dawn, day, sunset or night."""
    x = _as_float(frames)
    return _classify(_features(x), x.shape)[0]


def detect_weather(frames: np.ndarray) -> str:
    """clear, clouds, rain, snow or fog."""
    x = _as_float(frames)
    return _classify(_features(x), x.shape)[1]


# ----------------------------------------------------------------------------------------------------------------
# Together
# ----------------------------------------------------------------------------------------------------------------


def detect_all(frames: np.ndarray) -> dict[str, str | None]:
    """Every detector on one clip, sharing the subject mask: time, weather, camera, color, motion."""
    x = _as_float(frames)
    color, mask = _subject(x)
    keep = ~_dilate(mask, 2)
    time, weather = _classify(_scene_features(x, keep), x.shape)
    return {
        "time": time,
        "weather": weather,
        "camera": _camera_from(_gray(x), keep),
        "color": color,
        "motion": None if color is None else _motion_from_mask(mask),
    }


def score(scene: world.Scene, frames: np.ndarray) -> dict[str, bool]:
    """Per attribute the scene specifies, whether the detectors agree with it.

    Keys: ``time``, ``weather``, ``camera`` always; ``color`` and ``motion`` when the scene has a subject. Exact
    matches are required, with these conventions shared with the world: camera names describe the camera, so
    ``pan_left`` means content slides right; ``aerial`` is its own class (zoom in + content sliding up). A subject
    scene whose subject is not found fails both ``color`` and ``motion``.
    """
    return score_detected(scene, detect_all(frames))


def score_detected(scene: world.Scene, det: dict[str, str | None]) -> dict[str, bool]:
    """:func:`score` from :func:`detect_all`'s answer, for a caller that also wants what was detected."""
    out = {
        "time": det["time"] == scene.time,
        "weather": det["weather"] == scene.weather,
        "camera": det["camera"] == scene.camera,
    }
    if scene.subject is not None:
        out["color"] = det["color"] == scene.color
        out["motion"] = det["color"] is not None and det["motion"] == scene.motion
    return out
