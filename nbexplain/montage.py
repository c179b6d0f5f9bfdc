"""Grids of small pictures: a convolution's filters, a layer's feature maps. Numpy (Pillow writes
the labels).

Tiles are laid out row by row, ``columns`` to a row (default: a near-square grid), with ``pad``
pixels of ``background`` between them and around the border and, in a labelled montage, a strip
of ``label`` pixel rows above each tile for its number: tile ``i`` starts at row
``pad + (i // columns) * (label + tile_h + pad) + label``, column ``pad + (i % columns) * (tile_w + pad)``
(``Grid`` knows where each tile is and which tile a pixel belongs to). Coloured montages pad in
a colour their colormap does not have (``pad_colour``), so padding never reads as a value.
Arrays may be numpy arrays or CPU torch tensors.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .checks import check_count

NEUTRAL = (200, 200, 200)  # padding between tiles of a chromatic colormap (in none of them)
TINT = (118, 146, 196)  # padding between gray tiles (gray filters, the gray colormap): not a gray
INK = (20, 20, 20)  # label text
HIGHLIGHT = (230, 0, 160)  # the chosen tile's frame and label strip (in no colormap)
LABEL = 12  # pixel rows of a tile's label strip
MIN_LABELLED = 16  # with labels="auto", narrower tiles are not labelled


def pad_colour(cmap: str) -> tuple[int, int, int]:
    """The padding colour of a montage coloured by ``cmap``: a gray, unless ``cmap`` is gray."""
    return TINT if cmap == "gray" else NEUTRAL


def _array(values, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array or tensor; got dtype {array.dtype}")
    return array.astype(np.float32)


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) of a grid holding ``count`` tiles."""
    if count < 1:
        raise ValueError(f"a grid needs at least one tile; got {count}")
    if columns is None:
        columns = math.ceil(math.sqrt(count))
    else:
        check_count(columns, "columns")
    columns = min(columns, count)
    return math.ceil(count / columns), columns


@dataclass(frozen=True)
class Grid:
    """Where the tiles of a montage are (see the module's docstring)."""

    count: int
    rows: int
    columns: int
    tile_h: int
    tile_w: int
    pad: int
    label: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the whole montage."""
        return (self.pad + self.rows * (self.label + self.tile_h + self.pad),
                self.pad + self.columns * (self.tile_w + self.pad))

    def origin(self, index: int) -> tuple[int, int]:
        """(top, left) of tile ``index``'s picture; its label strip is the ``label`` rows above."""
        row, column = divmod(index, self.columns)
        return (self.pad + row * (self.label + self.tile_h + self.pad) + self.label,
                self.pad + column * (self.tile_w + self.pad))

    def index_at(self, x: float, y: float) -> int | None:
        """The tile whose picture or label holds pixel (x, y); ``None`` on padding, outside or for
        a coordinate that is not a finite number."""
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (x, y)):
            return None
        step_x, step_y = self.tile_w + self.pad, self.label + self.tile_h + self.pad
        column, row = math.floor((x - self.pad) / step_x), math.floor((y - self.pad) / step_y)
        inside = (x - self.pad - column * step_x < self.tile_w
                  and y - self.pad - row * step_y < self.label + self.tile_h)
        index = row * self.columns + column
        if not inside or not 0 <= column < self.columns or row < 0 or index >= self.count:
            return None
        return index


def layout(count: int, tile_h: int, tile_w: int, columns: int | None = None, pad: int = 1,
           label: int = 0) -> Grid:
    """The ``Grid`` of ``count`` tiles of ``tile_h`` × ``tile_w`` pixels."""
    check_count(pad, "pad", minimum=0)
    check_count(label, "label", minimum=0)
    rows, columns = grid_shape(count, columns)
    return Grid(count, rows, columns, tile_h, tile_w, pad, label)


def tile(tiles: np.ndarray, columns: int | None = None, pad: int = 1, background=0.0,
         label: int = 0) -> np.ndarray:
    """``tiles`` (N, h, w) or (N, h, w, C) laid out in a grid: (H, W) or (H, W, C), same dtype;
    ``background`` is a value or (for C channels) a colour; ``label`` rows are left above each tile."""
    tiles = np.asarray(tiles)
    if tiles.ndim not in (3, 4):
        raise ValueError(f"tiles must be (N, h, w) or (N, h, w, C); got shape {tiles.shape}")
    count, height, width = tiles.shape[:3]
    grid = layout(count, height, width, columns, pad, label)
    out = np.full((*grid.shape, *tiles.shape[3:]), background, dtype=tiles.dtype)
    for index in range(count):
        top, left = grid.origin(index)
        out[top:top + height, left:left + width] = tiles[index]
    return out


def _scale01(values: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    """Min-max to [0, 1] over ``axes`` (``None``: the whole array); constant parts → 0.5."""
    low = values.min(axis=axes, keepdims=True)
    span = values.max(axis=axes, keepdims=True) - low
    safe = np.where(span > 0, span, 1)
    return np.where(span > 0, (values - low) / safe, 0.5).astype(np.float32)


def normalize_tiles(tiles) -> np.ndarray:
    """Each of ``tiles`` (N, h, w) scaled to its own min–max, in [0, 1] (a constant tile: 0.5)."""
    return _scale01(_array(tiles, "tiles"), (1, 2))


def _check_normalize(normalize: str, each: str) -> None:
    if normalize not in (each, "all"):
        raise ValueError(f"normalize must be {each!r} (each tile on its own) or 'all' (one scale); "
                         f"got {normalize!r}")


# -- labels ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _label_rows(labels: bool | str, texts: Sequence[str], tile_w: int) -> int:
    """The label strip's height: ``LABEL`` when the tiles are labelled, else 0."""
    if labels not in (True, False, "auto"):
        raise ValueError(f"labels must be True, False or 'auto'; got {labels!r}")
    if labels is False or not texts:
        return 0
    need = max(MIN_LABELLED, *(math.ceil(_font(LABEL - 2).getlength(text)) + 2 for text in texts))
    if tile_w >= need:
        return LABEL
    if labels == "auto":
        return 0
    raise ValueError(f"labels need tiles at least {need} pixels wide; got {tile_w} (enlarge with scale=)")


def _draw_labels(picture: np.ndarray, grid: Grid, texts: Sequence[str], highlight: int | None) -> np.ndarray:
    """``texts`` written in the tiles' label strips; tile ``highlight`` framed in ``HIGHLIGHT``
    (in the padding around it) with its label reversed."""
    if highlight is None and not grid.label:
        return picture
    from PIL import Image, ImageDraw

    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    if highlight is not None:
        top, left = grid.origin(highlight)
        p = grid.pad
        if p:
            box = [left - p, top - grid.label - p, left + grid.tile_w + p - 1, top + grid.tile_h + p - 1]
            draw.rectangle(box, outline=HIGHLIGHT, width=p)
        if grid.label:
            draw.rectangle([left, top - grid.label, left + grid.tile_w - 1, top - 1], fill=HIGHLIGHT)
    if grid.label:
        font = _font(LABEL - 2)
        for index, text in enumerate(texts):
            top, left = grid.origin(index)
            colour = (255, 255, 255) if index == highlight else INK
            draw.text((left + 1, top - grid.label), text, fill=colour, font=font)
    return np.asarray(image).copy()


def colour_tiles(tiles01, texts: Sequence[str] | None = None, *, cmap: str = "viridis",
                 columns: int | None = None, pad: int = 2, labels: bool | str = "auto",
                 highlight: int | None = None) -> tuple[np.ndarray, Grid]:
    """(RGB uint8 montage, its ``Grid``) of ``tiles01`` (N, h, w) in [0, 1] through ``cmap``.

    Tile ``i`` is labelled ``texts[i]`` (default: ``i``) when ``labels`` (``"auto"``: when the
    tiles are wide enough); padding, and NaN values (nothing there), are ``pad_colour(cmap)``;
    tile ``highlight`` (a position) is framed.
    """
    from . import render

    values = _array(tiles01, "tiles01")
    if values.ndim != 3:
        raise ValueError(f"tiles01 must be (N, h, w); got shape {values.shape}")
    count = values.shape[0]
    texts = [str(i) for i in range(count)] if texts is None else [str(t) for t in texts]
    if len(texts) != count:
        raise ValueError(f"texts must name each of the {count} tiles; got {len(texts)}")
    if highlight is not None and not 0 <= highlight < count:
        raise ValueError(f"highlight must be a tile position in [0, {count - 1}]; got {highlight!r}")
    background = pad_colour(cmap)
    index = np.clip(np.nan_to_num(values, nan=0.0) * 255 + 0.5, 0, 255).astype(np.uint8)
    rgb = render.lut(cmap)[index]
    rgb[np.isnan(values)] = background
    label = _label_rows(labels, texts, values.shape[2])
    grid = layout(count, values.shape[1], values.shape[2], columns, pad, label)
    picture = tile(rgb, grid.columns, pad, background, label)
    return _draw_labels(picture, grid, texts if label else [], highlight), grid


# -- filters -----------------------------------------------------------------------------------
def filter_montage(weight, *, input_channel: int | None = None, columns: int | None = None, pad: int = 1,
                   scale: int = 1, normalize: str = "filter", background: int | tuple[int, int, int] = TINT,
                   labels: bool | str = "auto") -> np.ndarray:
    """A convolution's filters as an ``(H, W, 3)`` uint8 picture, one tile per output channel.

    ``weight`` is ``(out, in, kh, kw)``. Filters that read 3 channels (a first layer reading RGB)
    are drawn in colour; others in gray, showing ``input_channel`` or, when ``None``, the mean
    over input channels. ``normalize="filter"`` scales each filter to its own min–max,
    ``"all"`` uses one scale for all. ``scale`` enlarges each tile (nearest neighbour). The
    padding (``background``) is a muted blue, so it never merges with a white or gray filter
    pixel; tiles at least ``MIN_LABELLED`` pixels wide carry their filter's number (``labels``).
    """
    weight = _array(weight, "weight")
    if weight.ndim != 4:
        raise ValueError(f"weight must be a conv weight (out, in, kh, kw); got shape {weight.shape}")
    _check_normalize(normalize, "filter")
    check_count(scale, "scale")
    inputs = weight.shape[1]
    if input_channel is None and inputs == 3:
        tiles = weight.transpose(0, 2, 3, 1)  # (out, kh, kw, RGB)
    else:
        if input_channel is None:
            tiles = weight.mean(1)
        elif not 0 <= input_channel < inputs:
            raise ValueError(
                f"input_channel must be in [0, {inputs - 1}] (the filters read {inputs} channels); "
                f"got {input_channel}"
            )
        else:
            tiles = weight[:, input_channel]
        tiles = tiles[..., None].repeat(3, axis=3)
    tiles = _scale01(tiles, (1, 2, 3) if normalize == "filter" else None)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    pixels = np.clip(tiles * 255 + 0.5, 0, 255).astype(np.uint8)
    texts = [str(i) for i in range(len(pixels))]
    label = _label_rows(labels, texts, pixels.shape[2])
    picture = tile(pixels, columns, pad, background, label)
    grid = layout(len(pixels), pixels.shape[1], pixels.shape[2], columns, pad, label)
    return _draw_labels(picture, grid, texts if label else [], None)


@dataclass(frozen=True)
class WeightMatrix:
    """A 1×1 convolution's weights drawn as a matrix: ``picture`` (RGB uint8) shows output
    channels ``0 .. outputs - 1`` (columns) by input channels ``0 .. inputs - 1`` (rows), coloured
    from ``-limit`` (blue) through 0 (white) to ``+limit`` (red)."""

    picture: np.ndarray
    outputs: int
    inputs: int
    limit: float
    cell: int  # pixels a side


def weight_matrix(weight, *, width: int = 400, height: int = 320, cell: int = 12) -> WeightMatrix:
    """The weights of a 1×1 convolution ``(out, in, 1, 1)`` as a matrix, each filter a column:
    its weight on each input channel, on a signed scale symmetric around 0 (bwr), with the first
    and last channel numbers on both axes and a colour bar in raw weights at the right. Cells are
    square, at most ``cell`` pixels, and the picture fits ``width`` × ``height`` (at one pixel a
    cell, the channels beyond are left out: ``outputs`` and ``inputs`` say what is shown)."""
    from PIL import Image, ImageDraw

    from . import render

    weight = _array(weight, "weight")
    if weight.ndim != 4 or weight.shape[2:] != (1, 1):
        raise ValueError(f"weight must be a 1×1 conv weight (out, in, 1, 1); got shape {weight.shape}")
    outputs, inputs = weight.shape[:2]
    font = _font(LABEL - 2)
    left, top, right = int(font.getlength(str(inputs - 1))) + 6, LABEL + 2, 10 + 12 + 46
    room_w, room_h = max(1, width - left - right), max(1, height - top - 2)
    size = max(1, min(cell, room_w // outputs, room_h // inputs))
    outputs, inputs = min(outputs, room_w // size), min(inputs, room_h // size)
    matrix = weight[:outputs, :inputs, 0, 0].T  # rows: inputs, columns: outputs (filters)
    limit = float(np.abs(matrix).max())
    scaled = 0.5 + 0.5 * matrix / limit if limit > 0 else np.full(matrix.shape, 0.5, np.float32)
    cells = render.colorize(scaled, "bwr").repeat(size, 0).repeat(size, 1)
    bar_left = left + cells.shape[1] + 10
    tall = max(cells.shape[0], 3 * LABEL)
    image = Image.new("RGB", (bar_left + right - 10, top + tall + 2), "white")
    image.paste(Image.fromarray(cells), (left, top))
    ramp = np.linspace(1, 0, tall, dtype=np.float32)[:, None].repeat(10, 1)
    image.paste(Image.fromarray(render.colorize(ramp, "bwr")), (bar_left, top))
    draw = ImageDraw.Draw(image)
    frame = (120, 120, 120)
    draw.rectangle([left - 1, top - 1, left + cells.shape[1], top + cells.shape[0]], outline=frame)
    draw.rectangle([bar_left - 1, top - 1, bar_left + 10, top + tall], outline=frame)
    last_x = left + cells.shape[1] - font.getlength(str(outputs - 1))
    draw.text((left, 1), "0", fill=INK, font=font)
    if outputs > 1:
        draw.text((max(left + 12, last_x), 1), str(outputs - 1), fill=INK, font=font)
    draw.text((left - 4, top - 1), "0", fill=INK, font=font, anchor="ra")
    if inputs > 1:
        bottom = top + cells.shape[0] - LABEL + 2
        draw.text((left - 4, bottom), str(inputs - 1), fill=INK, font=font, anchor="ra")
    for y, value in ((0, limit), (tall // 2 - LABEL // 2, 0.0), (tall - LABEL + 2, -limit)):
        draw.text((bar_left + 14, top + y), f"{value:+.2g}" if value else "0", fill=INK, font=font)
    return WeightMatrix(np.asarray(image).copy(), outputs, inputs, limit, size)


# -- feature maps ------------------------------------------------------------------------------
def _pick(activations, channels: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    """(the feature maps ``channels`` picks, in that order; their channel numbers)."""
    activations = _array(activations, "activations")
    if activations.ndim != 3:
        raise ValueError(f"activations must be (K, h, w) feature maps; got shape {activations.shape}")
    count = activations.shape[0]
    if channels is None:
        return activations, list(range(count))
    index = np.asarray(channels)
    if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or index.size == 0:
        raise ValueError(f"channels must be a non-empty sequence of ints; got {channels!r}")
    if index.min() < 0 or index.max() >= count:
        raise ValueError(f"channels must be in [0, {count - 1}] ({count} feature maps); got {index.tolist()}")
    return activations[index], [int(i) for i in index]


def feature_grid(activations, *, channels: Sequence[int] | None = None, columns: int | None = None,
                 pad: int = 1, normalize: str = "map", background: float = 1.0) -> np.ndarray:
    """A layer's feature maps ``(K, h, w)`` as one ``(H, W)`` float32 picture in [0, 1]
    (``feature_montage`` draws it in colour, labelled, with padding no value has).
    ``channels`` picks and orders the maps shown (default: all); ``normalize="map"`` scales each
    map to its own min–max, ``"all"`` uses one scale."""
    _check_normalize(normalize, "map")
    maps, _ = _pick(activations, channels)
    maps = _scale01(maps, (1, 2) if normalize == "map" else None)
    return tile(maps, columns, pad, np.float32(background))


def feature_montage(activations, *, channels: Sequence[int] | None = None, columns: int | None = None,
                    pad: int = 2, scale: int = 1, normalize: str = "map", cmap: str = "viridis",
                    labels: bool | str = "auto", highlight: int | None = None) -> np.ndarray:
    """A layer's feature maps ``(K, h, w)`` as an ``(H, W, 3)`` uint8 picture through ``cmap``:
    each tile labelled with its channel number (tiles at least ``MIN_LABELLED`` pixels wide;
    ``scale`` enlarges them), the padding in ``pad_colour(cmap)`` (no value of the map), and
    channel ``highlight`` framed. ``channels`` and ``normalize`` as for ``feature_grid``."""
    _check_normalize(normalize, "map")
    check_count(scale, "scale")
    maps, shown = _pick(activations, channels)
    if highlight is not None and highlight not in shown:
        raise ValueError(f"highlight must be one of the channels shown {shown}; got {highlight!r}")
    maps = _scale01(maps, (1, 2) if normalize == "map" else None).repeat(scale, 1).repeat(scale, 2)
    position = None if highlight is None else shown.index(highlight)
    picture, _ = colour_tiles(maps, shown, cmap=cmap, columns=columns, pad=pad, labels=labels,
                              highlight=position)
    return picture


def strongest(activations, count: int | None = None) -> list[int]:
    """Channel indices of ``activations`` (K, h, w), highest mean activation first."""
    values = _array(activations, "activations")
    if values.ndim != 3:
        raise ValueError(f"activations must be (K, h, w) feature maps; got shape {values.shape}")
    means = values.reshape(values.shape[0], -1).mean(1)
    order = np.argsort(-means, kind="stable")
    return [int(i) for i in order[:count]]


def fit(picture: np.ndarray, size: tuple[int, int], background: float = 0.0) -> np.ndarray:
    """``picture`` (h, w[, C]) scaled by nearest neighbour to fit in ``size`` (H, W), aspect kept
    (an integer factor when enlarging, so every source pixel stays square), centred on
    ``background``."""
    picture = np.asarray(picture)
    height, width = picture.shape[:2]
    target_h, target_w = size
    factor = min(target_h / height, target_w / width)
    if factor >= 1:
        factor = math.floor(factor)
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    rows = np.minimum((np.arange(new_h) * height) // new_h, height - 1)
    cols = np.minimum((np.arange(new_w) * width) // new_w, width - 1)
    scaled = picture[rows][:, cols]
    out = np.full((target_h, target_w, *picture.shape[2:]), background, dtype=picture.dtype)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = scaled
    return out
