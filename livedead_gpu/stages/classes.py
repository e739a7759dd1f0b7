"""The five-class training mask."""

from __future__ import annotations

from ..backends import get_backend

BACKGROUND, CELL, OUTLINE, HOECHST, DRAQ7 = range(5)
CLASS_NAMES = ("background", "cell", "outline", "hoechst", "draq7")


def class_mask(cells, outlines, nucleus_labels, dead, backend="cpu"):
    """Paint the class mask: cell area 1, outline 2, Hoechst 3, Draq7 4, in that order.

    A nucleus is painted whole in one class: 4 when it is dead (it shows Draq7;
    Draq7 wins over Hoechst), else 3.

    Parameters
    ----------
    cells : (M, N) int32 array, cell instance labels
    outlines : (M, N) bool array
    nucleus_labels : (M, N) int32 array
    dead : (n + 1,) bool array, per nucleus label

    Returns
    -------
    (M, N) uint8 array, values 0..4
    """
    xp = get_backend(backend).xp
    # CELL where a cell is, in a fresh C-ordered array (the nuclei are written through ravel()).
    out = xp.empty(cells.shape, xp.uint8)
    xp.greater(cells, 0, out=out.view(bool))
    # Outline wins over cell area (OUTLINE > CELL); faster than copyto(where=).
    xp.maximum(out, outlines.view(xp.uint8) * xp.uint8(OUTLINE), out=out)
    # Nuclei cover a few % of a frame: paint just their pixels (flatnonzero syncs on CuPy).
    nucleus = xp.flatnonzero(nucleus_labels > 0)
    out.ravel()[nucleus] = xp.where(dead[nucleus_labels.ravel()[nucleus]], DRAQ7, HOECHST)
    return out
