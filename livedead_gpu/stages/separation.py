"""Cells separated by a marker watershed from their nuclei."""

from __future__ import annotations

from ..backends import get_backend


def separate_cells(area, nucleus_labels, backend="cpu"):
    """Split the cell area among the nuclei by OpenCV's watershed.

    Markers are 1 outside the cell area, ``i + 1`` on nucleus ``i`` and 0 on the
    cell area left to flood; the landscape is the distance to the nearest nucleus
    inside the cell area, clipped to 0..255. The article instead adds the labels
    onto a background of 1, which merges nucleus 1 into the background.

    Nuclei count as cell area even where the brightfield missed them (a nucleus
    lies in a cell). Cell-area blobs holding no nucleus are flooded by the
    background, as in the article.

    Parameters
    ----------
    area : (M, N) bool array
    nucleus_labels : (M, N) int32 array, 0 background, 1..n

    Returns
    -------
    cells : (M, N) int32 array
        Cell ``i`` is the region flooded from nucleus ``i``; 0 for background and
        outline pixels.
    outlines : (M, N) bool array
        The watershed lines: between cells and between a cell and the background,
        never along the image frame.
    """
    be = get_backend(backend)
    xp = be.xp
    is_nucleus = nucleus_labels > 0
    region = area | is_nucleus
    markers = xp.where(is_nucleus, nucleus_labels + 1, xp.where(region, 0, 1)).astype(xp.int32)
    distance = be.distance_to(is_nucleus)
    landscape = xp.minimum(xp.where(region, distance, 0), 255).astype(xp.uint8)
    flooded = be.watershed(landscape, markers)
    cells = xp.where(flooded >= 2, flooded - 1, 0).astype(xp.int32)
    return cells, flooded == -1
