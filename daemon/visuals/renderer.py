"""Beat-synced frames: a pure function of (audio time, :class:`VisualState`) -> RGBA image.

The picture, from back to front:

- **background**: a vertical gradient in the mood's colours (hue from valence: blue-violet when
  unpleasant, teal when neutral, warm orange when pleasant; saturation and brightness from
  arousal), brightened by the **pulse**;
- **pulse**: every beat adds a flash that peaks on the beat and decays within a fraction of the
  beat (stronger on the bar's downbeat), plus a ring that grows from the centre;
- **notes** as shapes, each layer its own shape and band, scrolling right to left past a
  "now" line at a quarter of the width (a note lights up while it sounds): lead = capsules,
  bass = thick bars at the bottom, drums = squares (kick large, hats small), pad = soft wide
  bands, arpeggio = small diamonds at the top.

With ``transparent=True`` the background is fully transparent and the pulse is a translucent
flash, for overlays (OBS, :func:`composite` over a video). Nothing here reads a clock or keeps
state between calls, so a render's frames are reproducible and a live frame at audio time ``t``
equals the render's frame at ``t``.

Cost: one gradient fill, a few dozen antialiased OpenCV shapes and a saturating add; well under
10 ms at 1280x720 (``moodscore bench`` reports ``visuals.fps_1280x720``).
"""

from __future__ import annotations

import colorsys
import functools
import math

import cv2
import numpy as np

from daemon.messages import KICK, SNARE, Layer
from daemon.visuals.timeline import VisualState

# Pulse: a flash that decays with this time constant (at most a quarter of the beat), with these
# strengths on downbeats and other beats.
PULSE_TAU_S = 0.09
DOWNBEAT_STRENGTH = 1.0
BEAT_STRENGTH = 0.55
# How much the full-strength pulse adds to the background's brightness (0-255).
FLASH_GAIN = 110.0
# In transparent mode the flash is this opaque at full strength.
FLASH_ALPHA = 0.35

# The scroll: the "now" line's x (fraction of the width) and the seconds the width spans.
NOW_X = 0.25
SPAN_S = 4.0

# (top, bottom) of each layer's band, as fractions of the height; pitch picks the y inside.
BANDS: dict[Layer, tuple[float, float]] = {
    Layer.ARP: (0.07, 0.25),
    Layer.LEAD: (0.24, 0.56),
    Layer.PAD: (0.54, 0.72),
    Layer.BASS: (0.72, 0.84),
    Layer.DRUMS: (0.86, 0.97),
    Layer.STINGER: (0.15, 0.85),  # across the picture: an answer to the picture, not a line
}
PITCH_RANGE: dict[Layer, tuple[int, int]] = {
    Layer.ARP: (60, 96),
    Layer.LEAD: (55, 90),
    Layer.PAD: (40, 84),
    Layer.BASS: (24, 60),
    Layer.DRUMS: (35, 52),
    Layer.STINGER: (40, 90),
}
# Hue offsets (degrees) of each layer from the mood's hue, so layers stay apart in colour.
HUE_OFFSET: dict[Layer, float] = {
    Layer.LEAD: 0.0,
    Layer.BASS: -40.0,
    Layer.DRUMS: 180.0,
    Layer.PAD: 40.0,
    Layer.ARP: 90.0,
    Layer.STINGER: 150.0,
}


def mood_hue(valence: float) -> float:
    """Hue in degrees for a valence in [-1, 1]: 250 (blue-violet) .. 170 (teal) .. 30 (orange)."""
    v = min(max(valence, -1.0), 1.0)
    return 170.0 - 80.0 * v if v < 0 else 170.0 - 140.0 * v


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((hue % 360.0) / 360.0, saturation, value)
    return np.array([r, g, b]) * 255.0


def pulse(t: float, state: VisualState) -> float:
    """The pulse at audio time ``t``: peaks on each beat (1 on a downbeat), decays in between.

    Every beat at or before ``t`` contributes ``strength * exp(-(t - beat) / tau)`` with
    ``tau`` the smaller of :data:`PULSE_TAU_S` and a quarter of the beat, so the flash is over
    well before the next beat at any tempo; arousal scales it between 0.7 and 1.
    """
    level = 0.0
    for beat in state.beats:
        dt = t - beat.time
        if dt < 0:
            continue
        tau = min(PULSE_TAU_S, 0.25 * beat.period)
        strength = DOWNBEAT_STRENGTH if beat.downbeat else BEAT_STRENGTH
        level += strength * math.exp(-dt / tau)
    return min(level, 1.2) * (0.85 + 0.15 * state.arousal)


@functools.lru_cache(maxsize=8)
def _gradient_column(height: int) -> np.ndarray:
    """0..1 down the frame, eased, [shape=(height, 1)]."""
    y = np.linspace(0.0, 1.0, height)
    return (y * y * (3 - 2 * y)).reshape(height, 1)


def render_frame(
    t: float,
    state: VisualState,
    *,
    width: int,
    height: int,
    transparent: bool = False,
) -> np.ndarray:
    """Draw the visuals of audio time ``t``.

    Parameters
    ----------
    t : audio time in seconds (the engine's sample clock).
    state : what to draw, from :meth:`VisualTimeline.state_at` of the same ``t``.
    width, height : frame size in pixels.
    transparent : a transparent background and a translucent flash (for overlays) instead of
        the opaque gradient.

    Returns
    -------
    frame : np.ndarray [shape=(height, width, 4), dtype=uint8], RGBA (alpha 255 throughout
        unless ``transparent``).
    """
    hue = mood_hue(state.valence)
    excite = (min(max(state.arousal, -1.0), 1.0) + 1.0) / 2.0  # 0 calm .. 1 intense
    level = pulse(t, state)
    scale = height / 720.0

    # One RGBA image: shapes are drawn with (r, g, b, a) colours, so a shape's opacity lands in
    # the alpha channel (transparent) or is mixed into its colour over the background (opaque).
    if transparent:
        flash_alpha = round(255 * FLASH_ALPHA * min(level, 1.0))
        if flash_alpha >= 3:  # the tail of the decay: leave the background clear
            pixel = np.append(_rgb(hue, 0.25, 1.0), flash_alpha).astype(np.uint8)
            out = np.empty((height, width, 4), dtype=np.uint8)
            # One 32-bit fill instead of a strided write per channel.
            out.view(np.uint32)[:] = pixel.view(np.uint32)[0]
        else:
            out = np.zeros((height, width, 4), dtype=np.uint8)
    else:
        top = _rgb(hue, 0.35 + 0.5 * excite, 0.10 + 0.12 * excite)
        bottom = _rgb(hue + 25.0, 0.45 + 0.45 * excite, 0.22 + 0.18 * excite)
        column = top + (bottom - top) * _gradient_column(height)
        column = column + FLASH_GAIN * level
        rgba = np.empty((height, 1, 4), dtype=np.uint8)
        rgba[:, 0, :3] = np.clip(column, 0, 255)
        rgba[:, 0, 3] = 255
        out = np.repeat(rgba, width, axis=1)

    canvas = _Canvas(out, transparent=transparent)
    _draw_ring(canvas, t, state, width, height, hue, scale)
    now_x = int(NOW_X * width)
    line_colour = _rgb(hue, 0.2, 0.55 + 0.45 * min(level, 1.0))
    canvas.line(
        (now_x, 0), (now_x, height), line_colour, max(1, round(2 * scale)), 160 + int(60 * level)
    )
    _draw_notes(canvas, t, state, width, height, hue, excite, scale)
    return out


class _Canvas:
    """Draws translucent shapes into an RGBA image.

    Transparent mode puts a shape's opacity into the alpha channel; opaque mode mixes its
    colour with the background colour under it once, instead of blending whole frames.
    """

    def __init__(self, image: np.ndarray, *, transparent: bool) -> None:
        self.image = image
        self.transparent = transparent

    def _colour(self, colour: np.ndarray, opacity: int, at: tuple[int, int]) -> tuple[int, ...]:
        if self.transparent or opacity >= 255:
            r, g, b = (int(c) for c in np.clip(colour, 0, 255))
            return (r, g, b, opacity if self.transparent else 255)
        y = min(max(at[1], 0), self.image.shape[0] - 1)
        x = min(max(at[0], 0), self.image.shape[1] - 1)
        under = self.image[y, x, :3].astype(np.float64)
        w = opacity / 255.0
        r, g, b = (int(c) for c in np.clip(under + (colour - under) * w, 0, 255))
        return (r, g, b, 255)

    def line(
        self,
        p1: tuple[int, int],
        p2: tuple[int, int],
        colour: np.ndarray,
        thickness: int,
        opacity: int = 255,
    ) -> None:
        cv2.line(self.image, p1, p2, self._colour(colour, opacity, p1), thickness, cv2.LINE_AA)

    def circle(
        self,
        centre: tuple[int, int],
        radius: int,
        colour: np.ndarray,
        thickness: int,
        opacity: int = 255,
    ) -> None:
        colour4 = self._colour(colour, opacity, centre)
        cv2.circle(self.image, centre, radius, colour4, thickness, cv2.LINE_AA)

    def polygon(self, points: np.ndarray, colour: np.ndarray, opacity: int = 255) -> None:
        at = (int(points[0][0]), int(points[0][1]))
        cv2.fillConvexPoly(self.image, points, self._colour(colour, opacity, at), cv2.LINE_AA)


def _draw_ring(
    canvas: _Canvas,
    t: float,
    state: VisualState,
    width: int,
    height: int,
    hue: float,
    scale: float,
) -> None:
    """A ring that grows from the centre after each beat and fades before the next."""
    if not state.beats:
        return
    beat = state.beats[-1]
    age = (t - beat.time) / max(beat.period, 1e-3)
    if not 0 <= age < 1:
        return
    size = (0.18 if beat.downbeat else 0.1) + 0.45 * age
    radius = int(size * min(width, height))
    opacity = int(200 * (1 - age) ** 2)
    if opacity < 8:
        return
    thickness = max(1, round((10 if beat.downbeat else 5) * scale * (1 - age) + 1))
    canvas.circle((width // 2, height // 2), radius, _rgb(hue + 15, 0.3, 1.0), thickness, opacity)


def _note_y(layer: Layer, pitch: int, height: int) -> int:
    top, bottom = BANDS[layer]
    low, high = PITCH_RANGE[layer]
    where = (min(max(pitch, low), high) - low) / (high - low)
    return int((bottom - (bottom - top) * where) * height)


def _draw_notes(
    canvas: _Canvas,
    t: float,
    state: VisualState,
    width: int,
    height: int,
    hue: float,
    excite: float,
    scale: float,
) -> None:
    px_per_s = width / SPAN_S
    now_x = NOW_X * width
    for note in state.notes:
        x0 = int(now_x + (note.time - t) * px_per_s)
        x1 = int(now_x + (note.end_time - t) * px_per_s)
        if x1 < -50 or x0 > width + 50:
            continue
        sounding = note.time <= t < note.end_time
        since = t - note.time
        # Lit while it sounds, brightest at the onset; faded once past.
        glow = math.exp(-max(since, 0.0) / 0.25) if since >= 0 else 0.0
        if note.end_time <= t:
            opacity = int(110 * max(0.0, 1 - (t - note.end_time) / 1.5))
        else:
            opacity = 255 if sounding else 170
        if opacity <= 4:
            continue
        velocity = note.velocity / 127.0
        colour = _rgb(
            hue + HUE_OFFSET[note.layer],
            0.55 + 0.35 * excite - 0.4 * glow,
            0.7 + 0.3 * max(glow, velocity * 0.5),
        )
        y = _note_y(note.layer, note.pitch, height)
        layer = note.layer
        if layer in (Layer.LEAD, Layer.STINGER):
            r = max(2, round((7 + 6 * velocity + 6 * glow) * scale))
            canvas.line((x0, y), (max(x1 - r, x0), y), colour, 2 * r, opacity)
        elif layer is Layer.BASS:
            half = max(2, round((9 + 5 * glow) * scale))
            canvas.line((x0, y), (max(x1 - half, x0), y), colour, 2 * half, opacity)
        elif layer is Layer.PAD:
            half = max(2, round(14 * scale))
            canvas.line((x0, y), (max(x1 - half, x0), y), colour, 2 * half, min(opacity, 120))
        elif layer is Layer.DRUMS:
            big = note.pitch in (KICK, SNARE)
            side = round(
                (14 if note.pitch == KICK else 10 if big else 6) * scale * (1 + 0.6 * glow)
            )
            pts = np.array(
                [[x0 - side, y - side], [x0 + side, y - side], [x0 + side, y + side],
                 [x0 - side, y + side]], dtype=np.int32,
            )  # fmt: skip
            canvas.polygon(pts, colour, opacity)
        else:  # arpeggio
            side = max(2, round((6 + 5 * glow) * scale))
            pts = np.array(
                [[x0, y - side], [x0 + side, y], [x0, y + side], [x0 - side, y]], dtype=np.int32
            )
            canvas.polygon(pts, colour, opacity)


def composite(overlay: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """Alpha-blend an RGBA overlay over an RGB picture of the same size.

    Parameters
    ----------
    overlay : np.ndarray [shape=(h, w, 4), dtype=uint8], straight (not premultiplied) alpha.
    picture : np.ndarray [shape=(h, w, 3), dtype=uint8].

    Returns
    -------
    np.ndarray [shape=(h, w, 3), dtype=uint8]
    """
    alpha = overlay[:, :, 3:4].astype(np.uint16)
    fg = overlay[:, :, :3].astype(np.uint16)
    bg = picture.astype(np.uint16)
    # (fg * a + bg * (255 - a) + 127) / 255 in integers: exact to one level, no float frames.
    mixed = (fg * alpha + bg * (255 - alpha) + 127) // 255
    return mixed.astype(np.uint8)


def pack_alpha(frame: np.ndarray) -> np.ndarray:
    """RGBA -> colour and alpha side by side, for video codecs without alpha (WebRTC).

    Returns np.ndarray [shape=(h, 2 * w, 3), dtype=uint8]: the colour on the left half, the alpha
    as grey on the right; the OBS page recombines them in a shader.
    """
    h, w = frame.shape[:2]
    packed = np.empty((h, 2 * w, 3), dtype=np.uint8)
    packed[:, :w] = frame[:, :, :3]
    packed[:, w:] = frame[:, :, 3:4]
    return packed
