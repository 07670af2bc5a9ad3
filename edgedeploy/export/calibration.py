"""Calibration sets for full-integer (int8) quantization.

A calibration set is a list of RGB images already resized and centre-cropped to the export resolution
(``size × size``, uint8 HWC) plus the same images ImageNet-normalised as ``(1, 3, size, size)`` float32 NCHW arrays
(:mod:`edgedeploy.data`'s convention: mean ``(0.485, 0.456, 0.406)``, std ``(0.229, 0.224, 0.225)``).

Sources:

* ``--calibration DIR``: every ``.jpg/.jpeg/.png/.bmp/.webp`` file in ``DIR`` (sorted by name, not recursive, at most
  ``max_images``), each resized (shorter side ``round(size / 0.875)``, bilinear) and centre-cropped like the parity
  photo;
* default: the embedded photo (matplotlib's ``grace_hopper.jpg``, nothing downloaded) and deterministic views of
  it: the evaluation centre crop, centre crops covering 100 %, 70 % and 55 % of the shorter side, the four corner
  crops at 70 %, and the horizontal flip of each (16 images).

Every set carries a ``describe()`` dict for the manifest: which source, how many images, a sha256 over the pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy.data import CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD, sample_image_path
from edgedeploy.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_MAX_IMAGES = 64


@dataclass
class CalibrationSet:
    """Images at the export resolution: ``images`` uint8 ``(size, size, 3)`` RGB; see :meth:`arrays`."""

    source: str  # "default" or "folder"
    location: str
    size: int
    images: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def arrays(self, layout: str = "NCHW") -> list[np.ndarray]:
        """ImageNet-normalised float32 batch-1 arrays, ``(1, 3, S, S)`` NCHW or ``(1, S, S, 3)`` NHWC."""
        out = []
        for im in self.images:
            a = (im.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
            a = a[None] if layout == "NHWC" else a.transpose(2, 0, 1)[None]
            out.append(np.ascontiguousarray(a, dtype=np.float32))
        return out

    def sha256(self) -> str:
        h = hashlib.sha256()
        for im in self.images:
            h.update(np.ascontiguousarray(im).tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """For the manifest: ``{"source", "location", "images", "size", "sha256"}``."""
        return {
            "source": self.source,
            "location": self.location,
            "images": len(self.images),
            "size": self.size,
            "sha256": self.sha256(),
        }

    def write_images(self, folder: Path) -> list[Path]:
        """Write the images as PNG files (lossless) into ``folder`` (used by MNN's quantizer, which reads files)."""
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, im in enumerate(self.images):
            p = folder / f"calib_{i:03d}.png"
            Image.fromarray(im, "RGB").save(p)
            paths.append(p)
        return paths


def _resize_center_crop(im: Any, size: int) -> np.ndarray:
    """The evaluation preprocessing of :func:`edgedeploy.data.load_image` without normalisation (uint8 HWC)."""
    from PIL import Image

    w, h = im.size
    short = round(size / CROP_RATIO)
    scale = short / min(w, h)
    im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _crop_resize(im: Any, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(im.crop(box).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def default_calibration_set(size: int) -> CalibrationSet:
    """The embedded photo plus deterministic crops and flips (16 images; see the module docstring)."""
    from PIL import Image

    path = sample_image_path()
    views: list[tuple[str, np.ndarray]] = []
    with Image.open(path) as raw:
        im = raw.convert("RGB")
        w, h = im.size
        views.append(("eval_center_crop", _resize_center_crop(im, size)))
        short = min(w, h)
        for frac in (1.0, 0.7, 0.55):
            s = round(short * frac)
            left, top = (w - s) // 2, (h - s) // 2
            views.append((f"center_{int(frac * 100)}", _crop_resize(im, (left, top, left + s, top + s), size)))
        s = round(short * 0.7)
        for name, (left, top) in (
            ("top_left_70", (0, 0)),
            ("top_right_70", (w - s, 0)),
            ("bottom_left_70", (0, h - s)),
            ("bottom_right_70", (w - s, h - s)),
        ):
            views.append((name, _crop_resize(im, (left, top, left + s, top + s), size)))
    views += [(f"{n}_flip", np.ascontiguousarray(v[:, ::-1])) for n, v in list(views)]
    return CalibrationSet(
        source="default",
        location=f"{path.name} (embedded) + crops and horizontal flips",
        size=size,
        images=[v for _, v in views],
        names=[n for n, _ in views],
    )


def folder_calibration_set(folder: str | Path, size: int, max_images: int = DEFAULT_MAX_IMAGES) -> CalibrationSet:
    """Images from ``folder`` (see the module docstring); :class:`ConfigError` when missing, empty or unreadable."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--calibration folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)[:max_images]
    if not files:
        raise ConfigError(f"--calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                images.append(_resize_center_crop(im.convert("RGB"), size))
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"calibration image {f} cannot be read: {e}") from e
    return CalibrationSet("folder", str(folder.resolve()), size, images, [f.name for f in files])


def calibration_set(size: int, folder: str | Path | None = None) -> CalibrationSet:
    """``folder``'s images when given, else the default set."""
    return folder_calibration_set(folder, size) if folder else default_calibration_set(size)
