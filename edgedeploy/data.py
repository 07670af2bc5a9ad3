"""Inputs for parity, calibration and benchmarking: the embedded real photo and seeded random tensors.

The real photo is matplotlib's ``sample_data/grace_hopper.jpg`` (shipped inside the matplotlib wheel; nothing is
downloaded). Preprocessing follows the ImageNet evaluation convention: resize the shorter side to
``round(size / 0.875)`` (bilinear), centre-crop ``size × size``, scale to [0, 1], normalise with the ImageNet mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``, layout NCHW float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
CROP_RATIO = 0.875


def sample_image_path() -> Path:
    """Path of matplotlib's bundled ``grace_hopper.jpg`` (raises ``FileNotFoundError`` if matplotlib lacks it)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's sample image is missing: {path}")
    return path


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Load an RGB image as a ``(1, 3, size, size)`` float32 NCHW array, ImageNet-normalised (module docstring)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        short = round(size / CROP_RATIO)
        scale = short / min(w, h)
        im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def real_image(size: int) -> np.ndarray:
    """The embedded photo at ``size``: ``(1, 3, size, size)`` float32 NCHW."""
    return load_image(sample_image_path(), size)


def random_inputs(shape: tuple[int, ...] | list[int], count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded standard-normal float32 arrays of ``shape`` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(count)]
