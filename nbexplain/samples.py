"""Bundled sample photos (scikit-image's data, shipped with the package: no download)."""

from __future__ import annotations

from PIL import Image

_SOURCES = {
    "cat": "chelsea",
    "coffee": "coffee",
    "astronaut": "astronaut",
    "rocket": "rocket",
    "cameraman": "camera",
}


def names() -> list[str]:
    """Names accepted by ``load``."""
    return list(_SOURCES)


def load(name: str) -> Image.Image:
    """The sample photo ``name`` as an RGB PIL image."""
    if name not in _SOURCES:
        raise ValueError(f"unknown sample {name!r}; valid: {names()}")
    try:
        from skimage import data
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("samples need scikit-image: pip install 'nbexplain[demo]'") from error
    return Image.fromarray(getattr(data, _SOURCES[name])()).convert("RGB")
