"""JPEG decoding for the HTTP and Redis helpers: OpenCV if importable, else Pillow."""

from __future__ import annotations

import io

import numpy as np


def _decode_cv2(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"not a JPEG OpenCV can decode ({len(data)} bytes)")
    return img


def _decode_pil(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as OpenCV gives it


def decoder() -> str:
    """The decoder `decode` uses: 'cv2' or 'pil'; ImportError naming both if neither."""
    for name, module in (("cv2", "cv2"), ("pil", "PIL.Image")):
        try:
            __import__(module)
            return name
        except ImportError:
            pass
    raise ImportError("decoding JPEG needs OpenCV or Pillow: pip install opencv-python-headless (or pillow)")


def decode(data: bytes) -> np.ndarray:
    """The JPEG `data` as a (h, w, 3) uint8 BGR array (OpenCV's channel order)."""
    return _decode_cv2(data) if decoder() == "cv2" else _decode_pil(data)
