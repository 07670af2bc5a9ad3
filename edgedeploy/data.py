"""Inputs for parity, calibration and benchmarking: the embedded real photo and seeded random tensors.

The real photo is matplotlib's ``sample_data/grace_hopper.jpg`` (shipped inside the matplotlib wheel; nothing is
downloaded). Preprocessing follows the ImageNet evaluation convention: resize the shorter side to
``round(size / 0.875)`` (bilinear), centre-crop ``size × size``, scale to [0, 1], normalise with the ImageNet mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``, layout NCHW float32.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def load_image(
    path: str | Path,
    size: int | tuple[int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Load an RGB image as a ``(1, 3, H, W)`` float32 NCHW array, normalised (module docstring).

    ``size`` is the square side or ``(H, W)``: the image is resized (bilinear) to cover
    ``round(H / 0.875) × round(W / 0.875)`` and centre-cropped to ``H × W``. ``mean`` / ``std`` are per-channel on
    the [0, 1] pixel scale (default ImageNet's).
    """
    from PIL import Image

    h_out, w_out = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        th, tw = round(h_out / CROP_RATIO), round(w_out / CROP_RATIO)
        scale = max(tw / w, th / h)
        im = im.resize((max(tw, round(w * scale)), max(th, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - w_out) // 2, (h - h_out) // 2
        im = im.crop((left, top, left + w_out, top + h_out))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    m = IMAGENET_MEAN if mean is None else np.asarray(mean, dtype=np.float32)
    s = IMAGENET_STD if std is None else np.asarray(std, dtype=np.float32)
    arr = (arr - m) / s
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None].astype(np.float32))


def real_image(
    size: int | tuple[int, int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """The embedded photo at ``size`` (side or ``(H, W)``): ``(1, 3, H, W)`` float32 NCHW."""
    return load_image(sample_image_path(), size, mean, std)


def model_input(
    shape: Sequence[int], mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """The photo for an NCHW ``shape`` ``(1, C, H, W)``: RGB when C == 3, its grey mean repeated otherwise.

    ``mean`` / ``std``: 1 or C values on the [0, 1] scale (default ImageNet's for RGB, 0.5 / 0.25 otherwise).
    Raises ValueError for another count (3 values cannot normalise a 1-channel photo).
    """
    _, c, h, w = (int(d) for d in shape)
    for label, v in (("mean", mean), ("std", std)):
        if v is not None and len(v) not in (1, c):
            raise ValueError(f"{label} has {len(v)} values for a {c}-channel input (give 1 or {c})")
    if c == 3:
        return real_image((h, w), mean, std)
    grey = real_image((h, w), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).mean(axis=1, keepdims=True)
    m = np.asarray(mean if mean is not None else [0.5], dtype=np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std if std is not None else [0.25], dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(((np.repeat(grey, c, axis=1) - m) / s).astype(np.float32))


def random_inputs(shape: tuple[int, ...] | list[int], count: int = 4, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded standard-normal float32 arrays of ``shape`` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(count)]
