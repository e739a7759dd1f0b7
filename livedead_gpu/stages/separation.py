"""Cells separated by a marker watershed from their nuclei."""

from __future__ import annotations

from ..backends import get_backend


def separate_cells(area, nucleus_labels, backend="cpu", method: str = "watershed"):
    """Split the cell area among the nuclei.

    ``method="watershed"`` is the article's (below); ``"voronoi"`` is `voronoi_cells`.

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
    method : {"watershed", "voronoi"}

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
    if method == "voronoi":
        return voronoi_cells(area, nucleus_labels, be)
    if method != "watershed":
        raise ValueError(f"method must be 'watershed' or 'voronoi', got {method!r}")
    xp = be.xp
    is_nucleus = nucleus_labels > 0
    distance = be.distance_to(is_nucleus)
    markers = xp.empty(nucleus_labels.shape, xp.int32)
    landscape = xp.empty(nucleus_labels.shape, xp.uint8)

    def prepare(rows):
        nucleus = is_nucleus[rows]
        outside = ~(area[rows] | nucleus)
        # label + 1 on nuclei, 1 outside (the two are disjoint), 0 to flood
        xp.add(nucleus_labels[rows], nucleus | outside, out=markers[rows])
        # Distances are square roots of integers; the cast below floors them. OpenCV's
        # exact transform can land one ulp under a whole number (varying from run to run),
        # so nudge up by 1e-3: less than the gap between any non-square root below 256
        # and the next integer (> 1 / 512), so no other value changes its floor.
        d = distance[rows]
        d += xp.float32(1e-3)
        xp.copyto(d, 0, where=outside)
        # fmin: cupyx's exact transform is NaN everywhere when there is no nucleus at all
        # (SciPy's and OpenCV's are large); 255 then, as for any far pixel.
        xp.fmin(d, 255, out=d)
        landscape[rows] = d

    be.by_rows(prepare, nucleus_labels.shape)
    flooded = be.watershed(landscape, markers)
    outlines = xp.empty(flooded.shape, bool)

    def finish(rows):
        xp.equal(flooded[rows], -1, out=outlines[rows])
        cells = xp.subtract(flooded[rows], 1, out=flooded[rows])  # -2 on lines, 0 background, i on cell i
        xp.maximum(cells, 0, out=cells)

    be.by_rows(finish, flooded.shape)
    return flooded, outlines


def voronoi_cells(area, nucleus_labels, backend="cpu"):
    """Split the cell area among the nuclei by growth from each nucleus, on the device.

    Every pixel of the cell area (nuclei included) goes to the nucleus it is
    nearest to along paths inside the area (8-connected steps, up to 255 px, the
    watershed landscape's range too); pixels no nucleus reaches are background, as
    in the watershed. The outline is the cell pixels next (4-neighbour) to a
    smaller label, background included: one pixel wide between two cells and
    along the background, never along the image frame.

    No host round trip: only a "did anything grow?" bool every 8 steps comes back.

    Parameters and returns as `separate_cells`.
    """
    be = get_backend(backend)
    xp = be.xp
    grown = be.grow_labels(nucleus_labels, area | (nucleus_labels > 0))
    # No outline on a nucleus (the watershed draws none on its markers): cell i holds nucleus i.
    outlines = (grown > be.min_filter(grown)) & (nucleus_labels == 0)
    return xp.where(outlines, 0, grown).astype(xp.int32), outlines
