"""Training augmentations that keep bg, scene, mask and depth aligned.

Geometry (horizontal flip, one crop window) moves all four together, so the scene still differs
from the bg exactly where the mask is. Colour jitter touches only the two photos: a shared part,
as when the camera's exposure or white balance drifts between the two shots, plus a smaller
independent part on the scene. Mask and depth are labels and are never jittered.

The ``camera`` preset is what differs between two shots of a fixed camera and nothing else: the
colour jitter, sensor noise and JPEG artefacts drawn for each photo on its own, and a shake of
the bg by a pixel or two; no flip and no crop, since a fixed camera's geometry never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import resize_image, resize_map

from .sample import Sample

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


@dataclass(frozen=True)
class Jitter:
    """One draw of colour changes: factors around 1, per-channel gains (a white-balance shift)."""

    brightness: float
    contrast: float
    saturation: float
    gains: np.ndarray  # (3,), luma-weighted mean 1

    def matrix(self, pivot: float) -> np.ndarray:
        """The 3x4 affine colour map: gains and brightness, contrast around ``pivot`` (a grey
        level), then saturation as a blend with the pixel's grey. All linear, so one transform."""
        blend = self.saturation * np.eye(3) + (1.0 - self.saturation) * np.outer(np.ones(3), _LUMA)
        linear = self.contrast * blend @ np.diag(self.brightness * self.gains)
        offset = np.full((3, 1), (1.0 - self.contrast) * pivot)
        return np.hstack([linear, offset]).astype(np.float32)


def _apply(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.transform(image, matrix)  # uint8 in, uint8 out, rounded and saturated


def _shift(image: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``image`` moved by (dx, dy) whole pixels, the uncovered border mirrored."""
    matrix = np.array([[1, 0, offset[0]], [0, 1, offset[1]]], dtype=np.float32)
    height, width = image.shape[:2]
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
    )


def preset(name: str) -> Augment | None:
    """The ``--augment`` choices: none; geometry (flip and crop); basic (+ colour jitter shared
    by both photos and a little on the scene alone); camera: what changes between two shots of
    a fixed camera and nothing else (the colour jitter, noise, JPEG and a shake of the bg by up
    to two pixels; no flip, no crop: a fixed camera's geometry never changes)."""
    presets = {
        "none": None,
        "geometry": Augment().without_jitter(),
        "basic": Augment(),
        "camera": Augment(flip=0.0, crop_scale=(1.0, 1.0), noise=3.0, jpeg=0.5, shake=2),
    }
    if name not in presets:
        raise MaskDepthError(f"augmentation {name!r}: expected one of {', '.join(presets)}")
    return presets[name]


@dataclass(frozen=True)
class Augment:
    """Flip, crop and colour jitter; strengths are the half-widths of uniform draws around 1."""

    flip: float = 0.5  # probability of a horizontal flip
    crop_scale: tuple[float, float] = (0.8, 1.0)  # crop side as a fraction of the image side
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03  # per-channel gain spread: a colour-temperature shift, not a true hue turn
    independent: float = 0.25  # the scene's own jitter, as a fraction of the shared strengths
    noise: float = 0.0  # each photo's gaussian noise sigma is drawn from [0, noise] grey levels
    jpeg: float = 0.0  # probability that each photo is re-encoded as JPEG at quality 30-90
    shake: int = 0  # the bg moves by up to this many pixels against the scene

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.crop_scale)
        if not 0.0 < low <= high <= 1.0:
            raise MaskDepthError(f"crop scale {self.crop_scale}: expected 0 < low <= high <= 1")
        object.__setattr__(self, "crop_scale", (low, high))
        if not 0.0 <= self.flip <= 1.0:
            raise MaskDepthError(f"flip probability {self.flip}: expected a number in [0, 1]")
        strengths = (self.brightness, self.contrast, self.saturation, self.hue, self.independent)
        if min(strengths) < 0 or max(strengths[:4]) >= 1:
            raise MaskDepthError(
                f"jitter strengths {strengths[:4]}: expected numbers in [0, 1); "
                f"independent {self.independent}: expected >= 0"
            )
        if self.noise < 0 or not 0 <= self.jpeg <= 1 or self.shake < 0:
            raise MaskDepthError(
                f"noise {self.noise}, jpeg {self.jpeg}, shake {self.shake}: expected noise >= 0, "
                "jpeg a probability, shake >= 0 pixels"
            )

    @property
    def jitters(self) -> bool:
        return max(self.brightness, self.contrast, self.saturation, self.hue) > 0

    def without_jitter(self) -> Augment:
        """The same geometry, colours untouched."""
        return replace(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)

    def __call__(
        self, sample: Sample, rng: np.random.Generator, size: tuple[int, int] | None = None
    ) -> Sample:
        """Return an augmented copy of ``sample`` at ``size`` (default: the sample's size).

        Passing the training size folds the crop's resize and the loader's resize into one.
        """
        if size is None:
            height, width = sample.scene.shape[:2]
            size = (height, width)
        bg, scene, mask, depth = self._geometry(sample, rng, (size[0], size[1]))
        if self.shake:
            bg = _shift(bg, rng.integers(-self.shake, self.shake + 1, 2))
        if self.jitters:
            bg, scene = self._jitter(bg, scene, rng)
        bg, scene = (self._sensor(photo, rng) for photo in (bg, scene))
        return Sample(bg=bg, scene=scene, mask=mask, depth=depth, name=sample.name)

    def _sensor(self, photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """This photo's own noise and JPEG artefacts."""
        if self.noise:
            sigma = rng.uniform(0, self.noise)
            noisy = photo + rng.normal(0, sigma, photo.shape).astype(np.float32)
            photo = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        if self.jpeg and rng.random() < self.jpeg:
            quality = int(rng.integers(30, 91))
            _, data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, quality])
            photo = np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED))
        return photo

    def _geometry(
        self, sample: Sample, rng: np.random.Generator, size: tuple[int, int]
    ) -> tuple[np.ndarray, ...]:
        height, width = sample.scene.shape[:2]
        flip = rng.random() < self.flip
        scale = rng.uniform(*self.crop_scale)
        crop_h = min(height, max(1, round(scale * height)))
        crop_w = min(width, max(1, round(scale * width)))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        images = [resize_image(sample.bg[window], size), resize_image(sample.scene[window], size)]
        maps = [resize_map(sample.mask[window], size), resize_map(sample.depth[window], size)]
        if flip:  # flipping after the crop = cropping the mirrored window of a flipped image
            return tuple(cv2.flip(a, 1) for a in images + maps)
        return tuple(np.ascontiguousarray(a) for a in images + maps)

    def _draw(self, rng: np.random.Generator, share: float, base: Jitter | None) -> Jitter:
        def factor(strength: float) -> float:
            return 1.0 + rng.uniform(-share * strength, share * strength)

        # Drawn first, then the three factors: the order of the draws is part of the augmentation.
        gains = 1.0 + rng.uniform(-share * self.hue, share * self.hue, 3)
        gains = gains / (gains @ _LUMA)
        drawn = Jitter(
            factor(self.brightness), factor(self.contrast), factor(self.saturation), gains
        )
        if base is None:
            return drawn
        return Jitter(
            base.brightness * drawn.brightness,
            base.contrast * drawn.contrast,
            base.saturation * drawn.saturation,
            base.gains * drawn.gains,
        )

    def _jitter(
        self, bg: np.ndarray, scene: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        shared = self._draw(rng, 1.0, None)
        own = self._draw(rng, self.independent, shared)
        # One pivot for both photos (the bg's grey level after the brightness change), so the
        # shared part maps equal pixels of bg and scene to equal pixels.
        pivot = shared.brightness * float(np.asarray(cv2.mean(bg)[:3]) @ _LUMA)
        return _apply(bg, shared.matrix(pivot)), _apply(scene, own.matrix(pivot))
