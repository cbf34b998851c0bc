"""Reading, checking, converting and writing images: one implementation for every caller."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import MaskDepthError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_READ_FLAGS = {
    "rgb": cv2.IMREAD_COLOR,
    "gray": cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH,
    "unchanged": cv2.IMREAD_UNCHANGED,
}


def _looks_truncated(data: bytes) -> bool:
    # libjpeg decodes a cut-off JPEG with only a warning and grey fill, so check its end marker.
    if data[:2] == b"\xff\xd8":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    return False


def decode_image(data: bytes, source: str | os.PathLike, mode: str = "rgb") -> np.ndarray:
    """Decode image bytes to RGB uint8 (``rgb``), one channel (``gray``, 8 or 16 bit) or as stored.

    ``source`` only names the image in the error message.
    """
    if not data:
        raise MaskDepthError(f"{source}: empty file, expected an image")
    image = None
    if not _looks_truncated(data):
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _READ_FLAGS[mode])
    if image is None:
        raise MaskDepthError(f"{source}: unreadable or truncated image")
    if mode == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif mode == "unchanged" and image.ndim == 3:
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return image


def read_image(path: str | os.PathLike, mode: str = "rgb") -> np.ndarray:
    """Read an image file; a missing file raises FileNotFoundError, a broken one MaskDepthError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    return decode_image(path.read_bytes(), path, mode)


def as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Return an HxWx3 uint8 RGB view of a grayscale, RGB or RGBA uint8 array."""
    if not isinstance(image, np.ndarray):
        raise MaskDepthError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise MaskDepthError(f"{name}: expected dtype uint8, got {image.dtype}")
    if image.size == 0:
        raise MaskDepthError(f"{name}: empty array of shape {image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise MaskDepthError(f"{name}: expected HxW, HxWx3 or HxWx4, got shape {image.shape}")


def to_unit(gray: np.ndarray) -> np.ndarray:
    """Map an 8- or 16-bit single-channel image to float32 in [0, 1]."""
    if gray.ndim == 3:
        gray = gray[:, :, 0]
    scale = 65535.0 if gray.dtype == np.uint16 else 255.0
    return gray.astype(np.float32) / np.float32(scale)


def from_unit(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """Map float values in [0, 1] (any shape) to 8- or 16-bit integers (rounded, clipped)."""
    top = 65535 if bits == 16 else 255
    dtype = np.uint16 if bits == 16 else np.uint8
    return np.clip(np.rint(values * top), 0, top).astype(dtype)


def encode_image(image: np.ndarray, suffix: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB, RGBA or single-channel image for a file with the given suffix."""
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    ok, buffer = cv2.imencode(suffix, image, params)
    if not ok:
        raise MaskDepthError(f"cannot encode a {image.dtype} {image.shape} image as {suffix}")
    return buffer.tobytes()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary name beside ``path``, then rename: a killed run leaves no half file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:  # interrupted or failed: leave nothing behind
        tmp.unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Encode by the path's suffix and write atomically."""
    path = Path(path)
    write_bytes_atomic(path, encode_image(image, path.suffix.lower(), jpeg_quality))
