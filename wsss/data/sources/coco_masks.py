"""COCO's segmentation masks decoded without pycocotools, to exactly its masks (those the WSSS COCO ground truth
is made with): the rasteriser `coco.py` paints an image's class map with.

Polygons are rasterised by the rule of maskApi.c's rleFrPoly (`polygon_mask`: roughly, the pixels whose centres
are inside, by the even-odd rule, on a 5x finer grid); RLE (uncompressed `counts` lists, as crowd annotations
have, and compressed `counts` strings) is decoded following maskApi.c (`decode_rle`). `annotation_mask` takes
either. Errors are ArtifactError saying what is wrong with the segmentation; the caller adds which annotation.
"""

from __future__ import annotations

import numpy as np

from ...core.artifacts import ArtifactError


def _check_size(segmentation: dict, height: int, width: int) -> None:
    size = segmentation.get("size")
    if size is None or [int(v) for v in size] != [height, width]:
        raise ArtifactError(f"RLE size {size} differs from the image's [{height}, {width}] (height, width)")


def _counts_from_string(counts: str) -> list[int]:
    """The run lengths of a compressed RLE string (pycocotools' rleFrString).

    Each count is written in 5-bit groups, least significant first, as ASCII 48 + group (+ 32 when more
    groups follow); bit 16 of the last group is the sign. From the fourth count on, what is written is
    the difference to the count two before (the previous run of the same value).
    """
    result: list[int] = []
    value = shift = 0
    for position, char in enumerate(counts):
        code = ord(char) - 48
        if not 0 <= code < 64:
            raise ArtifactError(f"compressed RLE: character {char!r} at {position} is outside '0'..'o'")
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue
        if code & 0x10:
            value |= -1 << shift
        if len(result) > 2:
            value += result[-2]
        result.append(value)
        value = shift = 0
    if shift:
        raise ArtifactError("compressed RLE ends in the middle of a count")
    return result


def decode_rle(segmentation: dict, height: int, width: int) -> np.ndarray:
    """An RLE mask as a (height, width) bool array.

    `counts`: a list of run lengths (uncompressed, as crowd annotations have) or a string (compressed,
    see `_counts_from_string`). Runs alternate between 0 and 1, starting with 0, over the pixels in
    column-major order. `size` ([height, width]) must be the image's, and the runs must cover it exactly.
    """
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise ArtifactError(f"an RLE segmentation must be a dict with 'counts' and 'size', got {type(segmentation)}")
    _check_size(segmentation, height, width)
    counts = segmentation["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        counts = _counts_from_string(counts)
    try:
        runs = np.asarray(counts, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ArtifactError("RLE counts must be a string or a list of integers") from None
    if runs.ndim != 1:
        raise ArtifactError("RLE counts must be a string or a flat list of integers")
    if runs.size and runs.min() < 0:
        raise ArtifactError(f"RLE count {int(runs.min())} is negative")
    if int(runs.sum()) != height * width:
        raise ArtifactError(f"RLE counts cover {int(runs.sum())} pixels, the image {height}x{width} has "
                            f"{height * width}")
    flat = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    return flat.reshape((width, height)).T.copy()


_UPSAMPLE = 5  # pycocotools draws polygon outlines on a grid 5 times finer than the pixels
_WINDOW = np.arange(-3, 4)  # steps tried around an estimated crossing (the estimate is off by one at most)


def _crossings(xy: np.ndarray, successor: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where polygon outlines cross the pixel columns' centre lines, as in pycocotools' rleFrPoly
    (maskApi.c): the edges (i, successor[i]) of the (n, 2) float64 vertices `xy`; returns each crossing's
    edge and its column-major pixel index, column * height + row.

    rleFrPoly moves the vertices onto a 5x grid, int(5 * v + 0.5) (C's cast truncates towards zero), and
    walks each edge, the closing one included, one grid step at a time along its longer axis, from its end
    lower on that axis: with slope s, the other coordinate is int(start + s * t + 0.5) at step t. Where
    two consecutive points differ in x, the smaller at 5c + 2 (the line x = c + 0.5 of pixel column c,
    0 <= c < width), it records in column c the row ceil((y - 2) / 5), y the smaller of the two points'
    (clamped to 0..height). Here each crossing is computed directly instead of walking every point: on an
    edge longer in x, the points are those at x = 5c + 2 and 5c + 3; on an edge longer in y, x changes
    after the last step t with int(start + s * t + 0.5) on the near side of the line, found from an
    estimate and settled by evaluating the C expression itself (same float operations, same order) on the
    steps around it. Crossings between two edges' walks only arise left of column 0, so none are lost.
    """
    grid = np.trunc(_UPSAMPLE * xy + 0.5).astype(np.int64)
    x0, y0 = grid[:, 0], grid[:, 1]
    x1, y1 = x0[successor], y0[successor]
    dx, dy = np.abs(x1 - x0), np.abs(y1 - y0)
    x_major = dx >= dy
    flip = np.where(x_major, x0 > x1, y0 > y1)
    sx, sy = np.where(flip, x1, x0), np.where(flip, y1, y0)  # the end lower along the longer axis
    ex = np.where(flip, x0, x1)
    steps = np.maximum(dx, dy)
    rise = np.where(x_major, np.where(flip, y0, y1) - sy, ex - sx).astype(np.float64)
    slope = rise / np.maximum(steps, 1)
    # the x range each walk covers, its end points evaluated as the walk does (exact on x-major edges)
    x_end = np.where(x_major, ex, np.trunc(sx + slope * steps + 0.5).astype(np.int64))
    x_start = np.where(x_major, sx, np.trunc(sx + 0.5).astype(np.int64))
    low, high = np.minimum(x_start, x_end), np.maximum(x_start, x_end)
    # the columns c it crosses, low <= 5c + 2 < 5c + 3 <= high, within the image
    first = np.maximum(-((2 - low) // _UPSAMPLE), 0)
    count = np.maximum(np.minimum((high - 3) // _UPSAMPLE, width - 1) - first + 1, 0)
    edge = np.repeat(np.arange(count.size), count)
    column = np.arange(edge.size) + np.repeat(first - np.cumsum(count) + count, count)
    line = _UPSAMPLE * column + 2
    y = np.empty(edge.size, dtype=np.int64)
    on_x = x_major[edge]
    e, c = edge[on_x], line[on_x]
    start, s = sy[e], slope[e]
    t = c - sx[e]  # steps t and t + 1 are at x = 5c + 2 and 5c + 3
    y[on_x] = np.minimum(np.trunc(start + s * t + 0.5), np.trunc(start + s * (t + 1) + 0.5))
    on_y = ~on_x
    e, c = edge[on_y], line[on_y]
    if e.size:
        start, s = sx[e], slope[e]
        estimate = np.clip(np.floor((c + 0.5 - start) / s), 0, steps[e] - 1).astype(np.int64)
        t = estimate[:, None] + _WINDOW
        x = np.trunc(start[:, None] + s[:, None] * t + 0.5)
        near = (x <= c[:, None]) == (s > 0)[:, None]  # x still at 5c + 2 or before (x falls if s < 0)
        count = near.sum(axis=1)  # near holds for t up to the crossing's first step, then no more
        if not ((count > 0) & (count < _WINDOW.size)).all():
            raise AssertionError("polygon_mask: a crossing fell outside the window around its estimate")
        y[on_y] = sy[e] + estimate + _WINDOW[0] + count - 1  # y grows with t on these edges: step t's
    row = np.clip(-((2 - y) // _UPSAMPLE), 0, height)  # ceil((y - 2) / 5), clamped
    return edge, column * height + row


def polygon_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """The union of polygons (each [x1, y1, x2, y2, ...] in pixels) as a (height, width) bool array,
    exactly as pycocotools makes it (frPyObjects, merge, decode).

    A polygon's crossings (`_crossings`), sorted in column-major order, switch its mask on and off: it is
    on over [crossing 0, crossing 1), [crossing 2, crossing 3), ... (from an odd last one to the image's
    end). All polygons' runs are merged into disjoint ones and painted with np.repeat over the columns
    they span. Pixel (x, y) is in about when its centre (x + 0.5, y + 0.5) is inside a polygon: columns
    2..6 and rows 3..8 for the square [2, 3, 7, 3, 7, 9, 2, 9]. Polygons of one or two points are empty.
    """
    parts = []
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, (list, tuple)) or len(polygon) % 2:
            raise ArtifactError(f"polygon #{index} must be a flat list of x, y pairs")
        if len(polygon) >= 6:  # fewer than 3 points have no area: pycocotools' mask of them is empty too
            parts.append(polygon)
    mask = np.zeros((height, width), dtype=bool)
    if not parts:
        return mask
    sizes = np.array([len(part) // 2 for part in parts])
    try:
        xy = np.array([value for part in parts for value in part], dtype=np.float64).reshape(-1, 2)
        valid = bool((np.abs(xy) < 2 ** 31 / _UPSAMPLE).all())  # C's int on the 5x grid; NaN fails too
    except (TypeError, ValueError):
        valid = False
    if not valid:
        for index, polygon in enumerate(polygons):
            try:
                values = np.array(polygon, dtype=np.float64)
            except (TypeError, ValueError):
                values = np.array([np.nan])
            if values.ndim != 1 or not (np.abs(values) < 2 ** 31 / _UPSAMPLE).all():  # NaN fails too
                raise ArtifactError(f"polygon #{index} has a coordinate that is not a finite number in range")
        raise ArtifactError("a polygon has a coordinate that is not a finite number in range")
    ends = np.cumsum(sizes)
    successor = np.arange(1, len(xy) + 1)
    successor[ends - 1] = ends - sizes  # each polygon's last vertex closes it to its first
    edge, index = _crossings(xy, successor, height, width)
    if not index.size:
        return mask
    # crossings sorted by polygon, then position; a polygon with an odd number is on to the image's end
    part = np.repeat(np.arange(len(parts)), sizes)[edge]
    odd = np.flatnonzero(np.bincount(part, minlength=len(parts)) % 2)
    part, index = np.concatenate((part, odd)), np.concatenate((index, np.full(odd.size, height * width)))
    key = np.sort(part * (height * width + 1) + index) % (height * width + 1)
    starts, stops = key[0::2], key[1::2]
    if len(parts) > 1:  # merge the polygons' runs where they overlap or touch
        order = np.argsort(starts, kind="stable")
        starts, stops = starts[order], np.maximum.accumulate(stops[order])
        opens = np.concatenate(([True], starts[1:] > stops[:-1]))
        starts, stops = starts[opens], stops[np.concatenate((opens[1:], [True]))]
    first, last = int(starts[0]) // height, -(-int(stops[-1]) // height)
    lengths = np.empty(2 * starts.size + 1, dtype=np.int64)  # off, on, off, ..., on, off
    lengths[0:-1:2] = starts - np.concatenate(([first * height], stops[:-1]))
    lengths[1::2] = stops - starts
    lengths[-1] = last * height - stops[-1]
    block = np.repeat(np.arange(lengths.size) % 2 == 1, lengths)  # columns first..last-1, one by one
    mask[:, first:last] = block.reshape(last - first, height).T
    return mask


def annotation_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask of an annotation's `segmentation`: polygons or RLE."""
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        return polygon_mask(segmentation, height, width)
    return decode_rle(segmentation, height, width)
