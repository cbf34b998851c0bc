"""A fixed camera's background that follows the light but not the objects.

Per frame, three pieces (``adaptive``; ``none`` keeps the first background frozen):

1. **Alignment** (:meth:`BackgroundModel.for_frame`, before the network): a per-channel gain
   and offset that maps the background onto the frame, fitted by least squares on the pixels
   judged background (outside the last mask, dilated; a grid of about 2000 of them), then
   again on the 70% that fit best, so that a new object that is not masked yet does not bend
   the fit. It corrects global drift (dimming, white balance, exposure) at once and touches no
   object: one gain for the whole picture cannot make a parked object vanish. A false blob that
   drift made is repaired here first: the aligned background matches the frame inside the blob
   too, the mask clears, and blending (2) takes over there again -- the way out of "the blob
   is masked, so never updated".
2. **Blending** (:meth:`BackgroundModel.update`, after it): where the mask is empty (dilated by
   a margin) the background moves towards the frame with time constant ``rate`` seconds
   (``alpha = 1 - exp(-dt / rate)``: the same meaning at any frame rate). Under an object
   nothing changes, so an object at rest stays new for as long as it rests.
3. **Relearn**: after ``relearn`` seconds with no object, the background becomes the frame
   (local changes the global gain cannot explain and that stay under ``min-area``).

Each piece can be switched off to measure the others (``align=False``, ``rate=inf``,
``relearn=inf``).

The state is float32 at the frame's size and is carried in the current light, so a long run
neither saturates nor accumulates gains.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MODES = ("none", "adaptive")
FIT_SAMPLES = 2048  # pixels the gain is fitted on (a regular grid): its error is ~1e-3
KEEP = 0.7  # share of the background pixels the second fit keeps (smallest residuals)
MIN_SHARE = 0.05  # fewer background pixels than this: keep the last gain


class BackgroundModel:
    """One source's background; ``bg`` RGB uint8 or None to learn it from ``learn`` frames."""

    def __init__(
        self,
        bg: np.ndarray | None,
        mode: str = "adaptive",
        rate: float = 30.0,
        relearn: float = 60.0,
        learn: int = 25,
        margin: int = 5,
        align: bool = True,
    ) -> None:
        self.mode, self.rate, self.relearn, self.margin = mode, rate, relearn, margin
        self.align = align
        self.state: np.ndarray | None = None if bg is None else bg.astype(np.float32)
        self._frozen = bg
        self._learning: np.ndarray | None = None
        self._learn = learn
        self._seen = 0
        self._last_time: float | None = None
        self._empty_since: float | None = None
        self._keep: np.ndarray | None = None  # pixels judged background at the last frame
        self.updates = 0
        self.relearns = 0

    @property
    def ready(self) -> bool:
        return self.state is not None

    def learn(self, frame: np.ndarray) -> bool:
        """Collect one of the first frames; the per-pixel median of ``learn`` of them becomes
        the background. True once it is ready. Memory: one (learn, H, W, 3) uint8 buffer."""
        if self._learning is None:
            self._learning = np.empty((self._learn, *frame.shape), np.uint8)
        self._learning[self._seen] = frame
        self._seen += 1
        if self._seen < self._learn:
            return False
        median = np.median(self._learning, axis=0)
        self._frozen = np.clip(np.rint(median), 0, 255).astype(np.uint8)
        self.state = median.astype(np.float32)
        self._learning = None
        return True

    def image(self) -> np.ndarray:
        """The background as it is now, RGB uint8 (rounded, saturated)."""
        assert self.state is not None
        return cv2.convertScaleAbs(self.state)  # the state is >= 0: abs changes nothing

    def for_frame(self, frame: np.ndarray) -> np.ndarray:
        """The background to pair with ``frame``: frozen for ``none``; aligned to the frame's
        light for ``adaptive`` (the state moves to the current light too)."""
        assert self.state is not None and self._frozen is not None
        if self.state.shape != frame.shape:  # a bg photographed at another size
            size = (frame.shape[1], frame.shape[0])
            self.state = cv2.resize(self.state, size, interpolation=cv2.INTER_AREA)
            self._frozen = cv2.resize(self._frozen, size, interpolation=cv2.INTER_AREA)
        if self.mode == "none":
            return self._frozen
        if not self.align:
            return self.image()
        state = self.state
        gain, offset = fit_gain(state, frame, self._keep)
        # in place, with OpenCV's per-channel scalars (numpy's broadcast is 10x slower here)
        cv2.multiply(state, (*map(float, gain), 0.0), dst=state)
        cv2.add(state, (*map(float, offset), 0.0), dst=state)
        cv2.max(state, 0.0, dst=state)
        return self.image()

    def update(self, frame: np.ndarray, mask: np.ndarray, objects: int, t: float) -> None:
        """After the network: blend where ``mask`` (bool, H x W) is empty; relearn after
        ``relearn`` s without objects. ``t``: the frame's time in seconds."""
        if self.mode == "none":
            return
        assert self.state is not None
        dt = 0.0 if self._last_time is None else max(t - self._last_time, 0.0)
        self._last_time = t
        keep = ~dilate(mask, self.margin)
        self._keep = keep
        if objects:
            self._empty_since = None
        elif self._empty_since is None:
            self._empty_since = t
        if self._empty_since is not None and t - self._empty_since >= self.relearn:
            self.state = frame.astype(np.float32)
            self._empty_since, self.relearns = t, self.relearns + 1
            return
        alpha = 1.0 - math.exp(-dt / self.rate) if self.rate > 0 else 1.0
        if alpha > 0:  # state = (1 - alpha) state + alpha frame, where keep: one OpenCV pass
            cv2.accumulateWeighted(frame, self.state, alpha, keep.view(np.uint8))
            self.updates += 1


def dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    """bool mask grown by ``margin`` pixels (the soft edge of an object is not background)."""
    if margin <= 0 or not mask.any():
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def fit_gain(
    bg: np.ndarray, frame: np.ndarray, keep: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (gain, offset) with ``frame ~ gain * bg + offset``, fitted by least squares
    on the ``keep`` pixels (all where None), then again on the 70% that fit best."""
    s = max(1, int(np.sqrt(bg.shape[0] * bg.shape[1] / FIT_SAMPLES)))
    x = bg[::s, ::s].reshape(-1, 3).astype(np.float32)
    y = frame[::s, ::s].reshape(-1, 3).astype(np.float32)
    if keep is not None and keep.shape == bg.shape[:2]:
        chosen = keep[::s, ::s].reshape(-1)
        if chosen.mean() < MIN_SHARE:
            return np.ones(3, np.float32), np.zeros(3, np.float32)
        x, y = x[chosen], y[chosen]
    gain, offset = _line(x, y)
    residual = np.abs(y - (x * gain + offset)).sum(axis=1)
    cut = int(KEEP * (len(residual) - 1))
    best = residual <= np.partition(residual, cut)[cut]
    return _line(x[best], y[best])


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column least-squares line y = g x + o; a flat column keeps g = 1."""
    mean_x, mean_y = x.mean(axis=0), y.mean(axis=0)
    dx, dy = x - mean_x, y - mean_y
    var = (dx * dx).mean(axis=0)
    gain = np.where(var > 1.0, (dx * dy).mean(axis=0) / np.maximum(var, 1.0), 1.0)
    gain = np.clip(gain, 0.2, 5.0).astype(np.float32)
    return gain, (mean_y - gain * mean_x).astype(np.float32)
