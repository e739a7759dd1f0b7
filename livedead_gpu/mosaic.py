"""Mosaics too large for one device, segmented in tiles with `dask.array`.

`segment_mosaic` treats a stitched image (e.g. a 20,000 × 20,000 whole well) as a
`dask.array` of tiles, in passes:

0. **The nucleus diameter.** ``params.nucleus_diameter`` / ``nucleus_diameter_px``
   when given. Otherwise it is measured once, as `segment_frame` measures it, on a
   central crop of the mosaic (``diameter_crop``, 2048² by default: the whole
   mosaic when it is no larger), and that one diameter serves every tile (the
   background window, the size filter, the split of touching nuclei, the
   Draq7-bright regions). A mosaic larger than the crop is therefore segmented as
   `segment_frame` segments it with ``nucleus_diameter_px`` set to
   `MosaicResult.diameter`. With the "contrast" threshold it is measured first
   (the threshold depends on it); with "block-max" or a fixed intensity, at the
   global thresholds, and only when touching nuclei are split.

1. **Global thresholds, exactly.** Every threshold of `segment_frame` is an order
   statistic or a histogram peak of small per-block quantities, so each tile
   reports its share and the driver merges them (value → count tables):

   - block-max thresholds (nuclei; the cell area with ``cell_threshold=
     "block-max"``): the peak of the *sum* of the tiles' block-max histograms.
     Tiles start on the block grid (``tile`` a multiple of ``coarseness``), so
     every block lies in one tile and the sum is the whole image's histogram.
     The gradient scale is the 99th percentile of the merged gradient block maxima,
     and the quantised block maxima are the quantised maxima (monotone), so one
     pass gives both.
   - the "noise" cell threshold: the median of the Laplacian-difference residual
     on the image's every-4th-pixel grid (each tile computes the grid points of its
     core, one pixel of halo) and the 5 % quantile of the means of the full
     ``coarseness`` blocks of the smoothed gradient that hold no zero pixel.
   - the "contrast" nucleus threshold: a chain of order statistics (25th
     percentile, median, the median and MAD of the darker half, the median of
     the bright pixels) of the background-subtracted Hoechst on the image's grid
     of every `~livedead_gpu.stages.nuclei.contrast_step`-th row and column (about
     65,536 points whatever the size). Each tile subtracts the background with a
     halo of the background window's reach, so its core's values are the whole
     image's bit for bit, and sends the core's grid points (on the global grid) to
     the driver, which runs the stage's own level on all of them (~300 kB for a
     20,000² mosaic). When those statistics read dim Hoechst, the objects found
     at that threshold are looked at on the central crop, as the diameter is
     measured; with ``nucleus_smoothing="auto"`` a dim field then gets the
     Gaussian, and the diameter and this pass are redone on the smoothed stain.
     A mosaic larger than the crop is segmented as `segment_frame` segments it
     with ``nucleus_smoothing`` set to ``thresholds["hoechst_smoothing"]``.
   - the Draq7 background of the ``dead_call="ratio"`` rule: the median Draq7
     outside the (grown) nuclei on every `~livedead_gpu.stages.nuclei.background_step`-th
     row and column (every other one below 2048²), from the tiles'
     summed intensity histograms (a pass of its own: it needs the nucleus masks
     at the global threshold); the Hoechst background likewise. With
     ``draq7_background="local"`` the same pass reduces the mesh blocks of
     `~livedead_gpu.stages.nuclei.local_background` that lie wholly in its core
     to their medians and sends the samples of the blocks it shares with other
     tiles (a 64-px block straddling a boundary: up to 256 samples of 10 bytes);
     the driver takes those blocks' medians, smooths the mesh, and each tile
     interpolates the blocks around its window, bit for bit the whole image's.
   - the Hoechst bleed-through (``bleed="auto"``): measured, as the diameter, on
     the central crop, at the global thresholds and backgrounds. A mosaic larger
     than the crop is segmented as `segment_frame` segments it with ``bleed`` set
     to ``thresholds["bleed"]``.

2. **The cell area's holes, over the whole mosaic.** Background not connected
   to the image's edge is cell area, and such a hole (a cell-free gap ringed by
   cells) may be wider than any tile: each tile numbers the background
   components of its core's closed mask and sends their numbers along its four
   edges; the driver joins those that meet across the seams (`_open_background`,
   a graph's connected components), and each tile fills the rest (`_cell_area`).

3. **Tiles with a halo** (`dask.array.map_overlap`'s overlap, ``boundary="none"``:
   the image edge keeps its own border rule): each tile runs the stages with the
   global values (the cell area of pass 2, ``find_nuclei(...,
   hoechst_threshold=, draq7_threshold=, diameter=, floor=)``) and only its core
   is kept. The halo (`overlap_depth`) covers the gradient's footprints (the
   Gaussian, Sobel, and the fill of zero padding),
   the closing and size-filter footprints, the background window, the windows of
   the nucleus split and of the Draq7-bright regions, and the largest expected
   cell diameter, so every cell with a pixel in a core has its nucleus, and its
   whole landscape, inside the tile. Cell labels are global: a cell is numbered
   1 + the raster index of its nucleus' first pixel in the mosaic, so two tiles
   seeing one cell give it one number, and a nucleus is counted
   (`MosaicResult.counts`) by the one tile whose core holds that first pixel.

Not supported: ``nucleus_threshold="contrast"`` with ``dead_call="touch"`` (the
Draq7 mask would need contrast statistics and a diameter of its own): a
ValueError says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import numpy as np

from . import stages
from .backends import get_backend
from .checks import EDGES, box_inside, warn_if_subtracted
from .params import SegmentParams, as_params
from .stages.gradient import (
    EDGE_SIDES,
    FLAT_QUANTILE,
    PADDING_MARGIN,
    PADDING_OPENING,
    SCALE_QUANTILE,
    blend_coverage,
    dim_lines,
    edge_medians,
    gradient_reach,
    noise_blocks,
    noise_from_statistics,
    padded_gradient,
    padding_of,
)
from .stages.nuclei import (
    _BACKGROUND_WIDTH,
    _DEAD_SMOOTHING,
    _MESH_SAMPLES,
    AUTO_SMOOTHING,
    DIM_WARNING,
    GROW,
    _contrast_statistics,
    _level,
    _nucleus_mask,
    _smoothed_look,
    _threshold_mask,
    background_step,
    bright_objects,
    contrast_diameter,
    contrast_image,
    contrast_step,
    labelled,
    looks_dim,
    mesh_box,
    mesh_image,
    mesh_values,
    outside_nuclei,
    smoothed_stain,
    stain_padding,
    stain_sigma,
    typical_diameter,
    window,
)
from .stages.threshold import grey_levels, grey_step, threshold_value

__all__ = ["MosaicResult", "overlap_depth", "segment_mosaic", "tile_chunks"]

_BINS = {"uint8": 256, "uint16": 65536}
_COMPUTE_KWARGS = {"scheduler", "num_workers", "pool", "optimize_graph"}


def overlap_depth(params: SegmentParams | None = None, max_cell_diameter: int = 64, diameter=None) -> int:
    """Halo in pixels each tile needs for its core to match whole-image processing.

    The gradient's reach (`~livedead_gpu.stages.gradient.gradient_reach`: the
    Gaussian and Sobel footprints, and the fill of zero padding), the
    cell-area dilations and erosions (``kernel_size // 2`` each), the nucleus
    closing and the Draq7-ratio growth, 2 px to spare, plus
    ``max_cell_diameter``: a cell pixel in the core has its nucleus within a cell
    diameter, so the whole cell and its nucleus lie inside the tile. With a
    nucleus diameter, the footprints that scale with it are added in turn, as each
    feeds the next: the "contrast" background (a grey opening and a box mean of
    one window, three half-windows), the Draq7-bright regions (a 1-px Gaussian and
    a nucleus radius of 3x3 maxima) and the split's window maxima
    (``split_spacing`` diameters).

    Parameters
    ----------
    params : SegmentParams, optional
    max_cell_diameter : int
        The largest expected cell diameter in pixels.
    diameter : float, optional
        The nucleus diameter in pixels; ``params.diameter_px`` when None. When
        neither is known the footprints that scale with it are left out: the
        smallest halo, which `segment_mosaic` checks ``tile`` against before it
        measures the diameter.

    Returns
    -------
    int
    """
    p = as_params(params)
    if isinstance(max_cell_diameter, bool) or not isinstance(max_cell_diameter, (int, np.integer)) \
            or max_cell_diameter < 1:
        raise ValueError(f"max_cell_diameter must be an int >= 1 (px), got {max_cell_diameter!r}")
    if diameter is None:
        diameter = p.diameter_px
    elif isinstance(diameter, bool) or not isinstance(diameter, (int, float, np.integer, np.floating)) \
            or not diameter > 0:
        raise ValueError(f"diameter must be a number > 0 (px), got {diameter!r}")
    gradient = gradient_reach(p.smoothing)
    morphology = (p.kernel_size // 2) * (p.dilations + p.erosions)
    nuclei = 2 * (p.nucleus_kernel // 2) + GROW // 2 + _smoothing_reach(p)
    if diameter is not None:
        nuclei += _background_reach(p, diameter) + _edge_reach(p, diameter)
        if p.split_nuclei:
            nuclei += max(1, round(p.split_spacing * diameter))
            if p.dead_call == "ratio" and p.dead_seeds:
                nuclei += int(4 * _DEAD_SMOOTHING + 0.5) + max(1, round(diameter / 2))
    return int(gradient + morphology + nuclei + 2 + max_cell_diameter)


def _largest_sigma(p) -> float:
    """The largest ``nucleus_smoothing`` Gaussian the stain may get: "auto" may smooth by
    `AUTO_SMOOTHING` (the "contrast" threshold only)."""
    if p.nucleus_smoothing == "auto" and p.nucleus_threshold == "contrast":
        return AUTO_SMOOTHING
    return stain_sigma(p)


def _smoothing_reach(p) -> int:
    """The reach of the ``nucleus_smoothing`` Gaussian (its radius int(4 sigma + 0.5), and a pixel to spare)."""
    sigma = _largest_sigma(p)
    return math.ceil(4 * sigma) + 1 if sigma > 0 else 0


def _padding_reach(p) -> int:
    """How far the nucleus stage's padding (`stages.frame_padding`, grown by `stages.nuclei.stain_padding`)
    reads past a pixel: the padding's opening and margin, and the Gaussian's growth. (`overlap_depth`
    holds it already: the gradient's reach counts the opening and margin, and more than the growth.)"""
    return PADDING_OPENING + PADDING_MARGIN + int(2 * _largest_sigma(p) + 0.5)


def _padding(zero, be):
    """`stages.frame_padding` of a window from its pixels 0 in every channel (host bool array)."""
    return padding_of(be.to_device(np.ascontiguousarray(zero)), be)


def _background_reach(p, diameter) -> int:
    """How far the "contrast" background (`stages.nuclei.background`) reads: 0 for other thresholds."""
    if p.nucleus_threshold != "contrast" or diameter is None:
        return 0
    return 3 * (window(_BACKGROUND_WIDTH * diameter) // 2)


def _edge_reach(p, diameter) -> int:
    """How far the ``nucleus_edge`` cut (`stages.nuclei.cut_edges`) reads past the background."""
    if p.nucleus_threshold != "contrast" or diameter is None or not p.nucleus_edge:
        return 0
    return window(diameter) // 2


def tile_chunks(size: int, tile: int, depth: int) -> tuple:
    """Chunk sizes along one axis: ``tile`` each, a remainder under ``depth`` merged into the last."""
    if size <= tile:
        return (size,)
    n, rest = divmod(size, tile)
    chunks = [tile] * n
    if rest >= depth:
        chunks.append(rest)
    elif rest:
        chunks[-1] += rest
    return tuple(chunks)


@dataclass
class MosaicResult:
    """What `segment_mosaic` returns.

    Attributes
    ----------
    classes : (M, N) uint8 dask.array
        The five classes, as `FrameResult.classes`.
    cells : (M, N) int32 (int64 past 2**31 pixels) dask.array
        Global cell labels: 1 + the raster index of the cell's nucleus' first pixel
        (sparse, not 1..n); 0 on background and outlines.
    thresholds : dict
        As `FrameResult.thresholds`, computed over the whole mosaic.
    depth : int
        The halo of each tile.
    chunks : tuple
        The tiles (dask chunks) of the mosaic; with alignment padding set aside, the
        margins are chunks of their own around them.
    diameter : float or None
        The nucleus diameter (px) every tile used: the parameters' own, else the
        one measured on the central crop; None when no stage needed one.
    """

    classes: object
    cells: object
    thresholds: dict
    depth: int
    chunks: tuple
    diameter: float | None = None
    _packed: object = None
    _counts: object = None

    def counts(self, **compute_kwargs) -> tuple[int, int]:
        """``(n_live, n_dead)`` over the mosaic, each nucleus counted by the tile owning it.

        Segments every tile (the arrays are lazy): after computing ``classes`` too,
        `store` does both in one pass.
        """
        import dask

        (parts,) = dask.compute(self._counts, **_check_compute(compute_kwargs, "counts"))
        return _sum_counts(parts)

    def store(self, classes, cells=None, **compute_kwargs) -> tuple[int, int]:
        """Write the class mask (and the cell labels) and count the nuclei, segmenting each tile once.

        Parameters
        ----------
        classes, cells : array-like
            Targets of the mosaic's shape that `dask.array.store` writes into, tile
            by tile: a zarr array, a `numpy.memmap`, a NumPy array (on a distributed
            cluster or the "processes" scheduler: a zarr array the workers share; a
            NumPy array or memmap is refused).
            ``cells`` may be omitted.
        **compute_kwargs
            As `segment_mosaic`'s (not ``optimize_graph``).

        Returns
        -------
        (n_live, n_dead) : tuple of int
            As `counts`.
        """
        import dask
        import dask.array as da

        compute_kwargs = _check_compute(compute_kwargs, "store")
        if "optimize_graph" in compute_kwargs:
            raise TypeError("store takes no optimize_graph: it computes without (see the comment)")
        sources, targets = [self.classes], [classes]
        if cells is not None:
            sources.append(self.cells)
            targets.append(cells)
        if not _in_this_process(compute_kwargs.get("scheduler")):
            for name, target in zip(("classes", "cells"), targets):
                if isinstance(target, np.ndarray):   # a memmap too: it travels as a copy
                    raise ValueError(
                        f"{name} is a NumPy array, which the workers of a distributed cluster or a process "
                        "pool would fill in copies of their own (it stays empty here): store into a zarr "
                        "array on storage they share, use the threaded scheduler, or compute the arrays")
        stored = da.store(sources, targets, lock=False, compute=False)
        # Unoptimised: dask's array optimisation fuses each tile's task into the arrays' chains
        # under new keys, and the counts' branch would segment every tile a second time.
        _, parts = dask.compute(stored, self._counts, optimize_graph=False, **compute_kwargs)
        return _sum_counts(parts)


def _in_this_process(scheduler) -> bool:
    """Whether dask computes in this process (threads or synchronously), where a task's
    writes into a NumPy array land in the caller's array."""
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    return get_scheduler(scheduler=scheduler) in (dask.threaded.get, dask.local.get_sync)


def _sum_counts(parts):
    return int(sum(c[0] for c in parts)), int(sum(c[1] for c in parts))


def _check_compute(compute_kwargs, who="this"):
    """``compute_kwargs``, refused when one is no `dask.compute` keyword of `_COMPUTE_KWARGS`
    (dask would ignore a misspelt one without a word)."""
    unknown = sorted(set(compute_kwargs) - _COMPUTE_KWARGS)
    if unknown:
        raise TypeError(f"{who} got unexpected keyword(s) {', '.join(unknown)}; besides its own parameters it "
                        f"takes dask.compute's {', '.join(sorted(_COMPUTE_KWARGS))}")
    return compute_kwargs


def segment_mosaic(brightfield, hoechst, draq7, params: SegmentParams | None = None, tile: int = 2048,
                   max_cell_diameter: int = 64, backend="cpu", diameter_crop: int = 2048,
                   **compute_kwargs) -> MosaicResult:
    """Segment a mosaic in tiles: global thresholds, then tiles with a halo.

    Parameters
    ----------
    brightfield, hoechst, draq7 : (M, N) uint8 or uint16 array_like or dask.array
        NumPy arrays, dask arrays, or anything `dask.array.asarray` reads lazily
        (a tifffile/zarr store, a memmap).
    params : SegmentParams, optional
        The defaults when omitted. ``nucleus_threshold="contrast"`` needs
        ``dead_call="ratio"`` (both defaults).
    tile : int
        Tile side in pixels: a multiple of ``params.coarseness`` (so the tiles
        align to the block grid) larger than the halo (`overlap_depth`). A last
        partial tile narrower than the halo joins its neighbour.
    max_cell_diameter : int
        The largest expected cell diameter in pixels (sets the halo).
    backend : {"cpu", "auto", "gpu", "gpu:N"}
        Each tile runs on this backend in whichever worker holds it (with dask-cuda
        workers, "gpu" is each worker's own device).
    diameter_crop : int
        Side in pixels of the central crop the nucleus diameter is measured on when
        the parameters give none (see the module notes); read into one worker.
    **compute_kwargs
        Passed to the `dask.compute` of the threshold passes: ``scheduler``,
        ``num_workers``, ``pool`` or ``optimize_graph`` (any other name is refused:
        dask would ignore a misspelt one without a word).

    Returns
    -------
    MosaicResult
        Thresholds and diameter computed now; ``classes`` and ``cells`` lazy
        (`MosaicResult.store` writes them and counts the nuclei in one pass).

    Raises
    ------
    ValueError
        Mismatched shapes, non-2-D or non-integer images, a ``tile`` not a multiple of
        the coarseness or not larger than the halo (checked again once the diameter is
        measured), a ``diameter_crop`` under 64, or ``nucleus_threshold="contrast"``
        with ``dead_call="touch"``.

    Warns
    -----
    UserWarning
        As `segment_frame`, with ``nucleus_smoothing = 0``, when the Hoechst nuclei
        stand too dim over its noise to threshold pixel by pixel but
        ``nucleus_smoothing = 1`` would find them: the raw statistics are the whole
        mosaic's, the look at the objects found and the smoothed second look are
        taken on the central ``diameter_crop``, which also decides "auto".
    """
    import dask
    import dask.array as da

    p = as_params(params)
    _check_compute(compute_kwargs, "segment_mosaic")
    if p.nucleus_threshold == "contrast" and p.dead_call == "touch":
        raise ValueError("nucleus_threshold='contrast' with dead_call='touch' is not supported for mosaics (the "
                         "Draq7 mask would need contrast statistics and a diameter of its own); use "
                         "dead_call='ratio' or a 'block-max' or fixed nucleus threshold")
    depth = overlap_depth(p, max_cell_diameter)
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile % p.coarseness:
        raise ValueError(f"tile must be an int multiple of coarseness ({p.coarseness}) so the tiles align to the "
                         f"block grid, got tile={tile!r}")
    _check_tile(tile, depth, max_cell_diameter, p.diameter_px)
    if isinstance(diameter_crop, bool) or not isinstance(diameter_crop, (int, np.integer)) or diameter_crop < 64:
        raise ValueError(f"diameter_crop must be an int >= 64 (px), got {diameter_crop!r}")
    arrays = {}
    for name, image in (("brightfield", brightfield), ("hoechst", hoechst), ("draq7", draq7)):
        a = image if isinstance(image, da.Array) else da.asarray(image)
        if a.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {a.shape}")
        if any(math.isnan(n) for n in a.shape):  # e.g. after boolean indexing
            raise ValueError(f"{name} has chunks of unknown size (shape {a.shape}); "
                             f"call its .compute_chunk_sizes() first")
        if a.dtype.name not in _BINS:
            raise ValueError(f"{name} has dtype {a.dtype}; mosaics take uint8 or uint16")
        if not a.dtype.isnative:  # e.g. a big-endian TIFF's memmap: OpenCV reads its bytes as native
            a = a.astype(a.dtype.newbyteorder("="))
        arrays[name] = a
    shape = arrays["brightfield"].shape
    if any(a.shape != shape for a in arrays.values()):
        raise ValueError("brightfield, hoechst and draq7 must have one shape, got "
                         + ", ".join(f"{n} {a.shape}" for n, a in arrays.items()))
    if min(shape) < p.coarseness:
        raise ValueError(f"mosaic of shape {shape} is smaller than one block ({p.coarseness} px)")
    bf, ho, d7 = arrays["brightfield"], arrays["hoechst"], arrays["draq7"]
    box = _padding_box((bf, ho, d7), p.coarseness, compute_kwargs)
    if box is not None:  # alignment padding, as `segment_frame`: the mosaic inside it, pasted back
        inner = segment_mosaic(bf[box], ho[box], d7[box], params, tile, max_cell_diameter, backend, diameter_crop,
                               **compute_kwargs)
        return _paste(inner, box, shape)
    crop = tuple(slice((n - min(n, diameter_crop)) // 2, (n + min(n, diameter_crop)) // 2) for n in shape)
    # Where every channel is 0, and the edge lines a registration dimmed: each tile finds the
    # alignment padding of its window in it (`stages.frame_padding`), which the nucleus stage
    # leaves out.
    dim, coverage = _dim_edges(bf, compute_kwargs)
    zero = ((bf == 0) & (ho == 0) & (d7 == 0)) | dim
    measure = dask.delayed(_crop_diameter, pure=True)
    # As `segment_frame` warns of a background-subtracted stain: on the central crop (every 4th
    # pixel of it is all the warning reads).
    sample = dict(zip(("brightfield", "hoechst", "draq7"),
                      dask.compute(*(a[crop][::4, ::4] for a in (bf, ho, d7)), **compute_kwargs)))
    warn_if_subtracted(sample, ("hoechst", "draq7") if p.dead_call == "ratio" else ("hoechst",), step=1)

    def threshold_pass(p, depth, measured=None):
        """Passes 0 and 1 at ``p``'s smoothing: the diameter (``measured`` when the crop's
        has been already), the tiles' statistics, the thresholds."""
        # -- pass 0: the "contrast" threshold is a statistic of an image its diameter sets
        diameter = p.diameter_px
        if diameter is None and p.nucleus_threshold == "contrast":
            if measured is None:
                (measured,) = dask.compute(measure(ho[crop], None, zero[crop], p, backend, None), **compute_kwargs)
            diameter = measured
            depth = overlap_depth(p, max_cell_diameter, diameter)
            _check_tile(tile, depth, max_cell_diameter, diameter)

        # -- pass 1: per-tile statistics, merged into the global thresholds
        stat_depth = max(gradient_reach(p.smoothing) + 1,
                         _background_reach(p, diameter) + _smoothing_reach(p) + _padding_reach(p))
        stat = dask.delayed(_tile_stats, pure=True)
        parts = []
        # Every statistic is of whole blocks or of global grid points, so the tiling (set
        # here before a block-max mosaic's diameter, hence its halo, is known) does not matter.
        for core in _tiles(shape, _chunks(shape, tile, depth)):
            win, where = _window(shape, core, stat_depth)
            parts.append(stat(bf[win], ho[win], d7[win], zero[win], dim[win], where, p, backend, shape, diameter))
        (parts,) = dask.compute(parts, **compute_kwargs)
        return diameter, depth, _merge_stats(parts, p, ho.dtype.name, d7.dtype.name, coverage)

    diameter, depth, (thresholds, contrast) = threshold_pass(p, depth)
    if contrast is not None and looks_dim(*contrast, p, ho.size):
        # segment_frame's second look at dim Hoechst (the objects found, the smoothed
        # stain), on the central crop.
        ((smooth, measured),) = dask.compute(dask.delayed(_crop_smooths, pure=True)(
            ho[crop], zero[crop], p, backend, thresholds["hoechst"], diameter, contrast), **compute_kwargs)
        if smooth and p.nucleus_smoothing != "auto":
            warnings.warn(DIM_WARNING, UserWarning, stacklevel=2)
        elif smooth:
            # "auto": the Gaussian, and the diameter and statistics again on the smoothed stain.
            p = replace(p, nucleus_smoothing=AUTO_SMOOTHING)
            diameter, depth, (thresholds, contrast) = threshold_pass(p, depth, measured)
    if p.nucleus_smoothing == "auto":
        p = replace(p, nucleus_smoothing=0.0)
        depth = overlap_depth(p, max_cell_diameter, diameter)  # no Gaussian's reach
    thresholds["hoechst_smoothing"] = stain_sigma(p)
    local = p.dead_call == "ratio" and p.draq7_background == "local"
    if diameter is None and (p.split_nuclei or local):
        # The split's (and the local background's) diameter, measured (as segment_frame
        # would) on the masks at the global thresholds.
        (diameter,) = dask.compute(measure(ho[crop], d7[crop], zero[crop], p, backend, thresholds),
                                   **compute_kwargs)
        depth = overlap_depth(p, max_cell_diameter, diameter)
        _check_tile(tile, depth, max_cell_diameter, diameter)
    chunks = _chunks(shape, tile, depth)
    tiles = _tiles(shape, chunks)

    floor = hoechst_floor = None
    bleed = 0.0
    if p.dead_call == "ratio":
        # The Draq7 (and Hoechst) background: the median outside the grown nuclei, whole
        # mosaic; and with "local" the mesh of block medians of `local_background`.
        box = mesh_box(diameter) if local else None
        bg = dask.delayed(_tile_background, pure=True)
        parts = []
        for core in tiles:
            win, where = _window(shape, core, depth)
            parts.append(bg(ho[win], d7[win], zero[win], where, p, backend, shape, thresholds["hoechst"], diameter,
                            p.bleed != 0, box))
        (parts,) = dask.compute(parts, **compute_kwargs)
        floor = _outside_median(parts, "draq7")
        if p.bleed != 0:
            hoechst_floor = _outside_median(parts, "hoechst")
        if local:
            floor = (_mesh_grid(parts, shape, box, floor), box)
        bleed = p.bleed
        if bleed == "auto":
            # Measured, as the diameter, on the central crop: the whole mosaic when no larger.
            (bleed,) = dask.compute(dask.delayed(_crop_bleed, pure=True)(
                ho[crop], d7[crop], zero[crop], (crop[0].start, crop[1].start), p, backend, thresholds, floor,
                hoechst_floor, diameter), **compute_kwargs)
    thresholds["bleed"] = float(bleed)

    # -- pass 2: the cell area, its holes filled over the whole mosaic
    area = _cell_area(bf, dim, p, backend, shape, chunks, tiles, thresholds, compute_kwargs)

    # -- pass 3: tiles with a halo, segmented at the global thresholds
    seg = dask.delayed(_tile_segment, pure=True, nout=2)
    blocks, counts = [], []
    for core in tiles:
        win, where = _window(shape, core, depth)
        # The cell area's cores that the window overlaps, as Delayed objects: a dask.array
        # slice given to dask.delayed is optimised (fused) into each caller's graph, and every
        # window would make its neighbours' cell area again.
        parts = [(block, core) for block, core in zip(area, tiles) if _overlap(core, win)]
        packed, count = seg(parts, ho[win], d7[win], zero[win], where, p, backend, shape, thresholds, floor,
                            hoechst_floor, diameter)
        (y0, y1), (x0, x1) = core
        blocks.append(da.from_delayed(packed, shape=(y1 - y0, x1 - x0), dtype=np.int64,
                                      meta=np.empty((0, 0), np.int64)))
        counts.append(count)
    ncols = len(chunks[1])
    packed = da.block([blocks[i:i + ncols] for i in range(0, len(blocks), ncols)])
    cell_dtype = np.int32 if shape[0] * shape[1] < 2**31 - 1 else np.int64
    classes = (packed % 8).astype(np.uint8)
    cells = (packed // 8).astype(cell_dtype)
    return MosaicResult(classes, cells, thresholds, depth, chunks, diameter, packed, counts)


def _dim_edges(bf, compute_kwargs):
    """`stages.gradient.dim_edges` of the whole mosaic's brightfield (its three outer lines a side
    read), as a lazy bool array of its chunks (every tile's window takes the whole edges' marks),
    and its `stages.gradient.blend_coverage`."""
    import dask
    import dask.array as da

    if min(bf.shape) < 3:
        return da.zeros(bf.shape, bool, chunks=bf.chunks), (1.0, 1.0)
    sides = dask.compute(*(bf[e] for e in EDGE_SIDES), **compute_kwargs)
    medians = edge_medians(None, sides=sides)   # host arrays, read once for both
    marks = [[bool(m) for m in pair] for pair in dim_lines(medians)]
    m, n = bf.shape

    def place(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        out = np.zeros((y1 - y0, x1 - x0), bool)
        for side, pair in enumerate(marks):
            for k, dim in enumerate(pair):
                if not dim:
                    continue
                at = (k, m - 1 - k, k, n - 1 - k)[side]
                if side < 2 and y0 <= at < y1:
                    out[at - y0] = True
                elif side >= 2 and x0 <= at < x1:
                    out[:, at - x0] = True
        return out

    return da.map_blocks(place, dtype=bool, chunks=bf.chunks), blend_coverage(medians)


def _padding_box(arrays, least, compute_kwargs):
    """`livedead_gpu.checks.data_box` of dask arrays: their four edge lines read first, the
    whole mosaic only when one of them is 0 in every channel."""
    import dask

    def zero(part):
        out = part(arrays[0]) == 0
        for a in arrays[1:]:
            out &= part(a) == 0
        return out

    flat = dask.compute(*[zero(lambda a, e=e: a[e]).all() for e in EDGES], **compute_kwargs)
    if not any(flat):
        return None
    zero = zero(lambda a: a)
    rows, cols = dask.compute(zero.all(axis=1), zero.all(axis=0), **compute_kwargs)
    return box_inside(rows, cols, least)


def _paste(inner: MosaicResult, box, shape) -> MosaicResult:
    """``inner``, the result of the mosaic inside ``box``, on the whole mosaic: margins background,
    cell labels renumbered to the whole mosaic's raster index."""
    import dask.array as da

    (top, left), cols = (box[0].start, box[1].start), box[1].stop - box[1].start
    pad = ((top, shape[0] - box[0].stop), (left, shape[1] - box[1].stop))
    index = inner.cells.astype(np.int64) - 1
    cells = da.where(inner.cells > 0, (index // cols + top) * shape[1] + index % cols + left + 1, 0)
    cells = da.pad(cells.astype(np.int32 if shape[0] * shape[1] < 2**31 - 1 else np.int64), pad)
    classes = da.pad(inner.classes, pad)
    return MosaicResult(classes, cells, inner.thresholds, inner.depth, classes.chunks, inner.diameter,
                        cells.astype(np.int64) * 8 + classes, inner._counts)


def _check_tile(tile, depth, max_cell_diameter, diameter=None):
    if tile <= depth:
        of = "" if diameter is None else f" and the nucleus diameter {diameter:.1f} px"
        raise ValueError(f"tile={tile} must be larger than the overlap depth {depth} (max_cell_diameter="
                         f"{max_cell_diameter}{of} plus the filter footprints); use a larger tile")


def _chunks(shape, tile, depth):
    return tile_chunks(shape[0], tile, depth), tile_chunks(shape[1], tile, depth)


def _crop_smooths(ho, zero, p, backend, threshold, diameter, contrast):
    """Whether smoothing this (crop) Hoechst is called for, as `segment_frame` decides
    (`bright_objects`, `_smoothed_look`), at the mosaic's ``threshold``, ``diameter``
    and contrast statistics; and the diameter measured on the smoothed crop (None
    when not looked at), which the smoothed threshold pass reuses. ``zero``: the
    crop's pixels 0 in every channel."""
    be = get_backend(backend)
    ho = be.to_device(np.ascontiguousarray(ho))
    padding = _padding(zero, be)
    y = contrast_image(ho, _BACKGROUND_WIDTH * diameter, be, padding=padding)
    # (the size filter's advice is the tiles' to give)
    mask, _ = _threshold_mask(y, threshold, diameter, p, be, advice=[])
    if bright_objects(mask, y, *contrast[:2], be):
        return False, None
    lifts, _, measured = _smoothed_look(ho, p, be, padding)
    return lifts, float(measured)


def _crop_diameter(ho, d7, zero, p, backend, thresholds):
    """The nucleus diameter `segment_frame` measures on these (crop) images.

    Without ``thresholds``: the "contrast" threshold's own measurement. With them
    (the mosaic's): the split's, `typical_diameter` of the nucleus masks at those
    thresholds (the union with the Draq7 mask for ``dead_call="touch"``). ``zero``:
    the crop's pixels 0 in every channel.
    """
    be = get_backend(backend)
    ho = be.to_device(np.ascontiguousarray(ho))
    padding = _padding(zero, be)
    if thresholds is None:
        return float(contrast_diameter(smoothed_stain(ho, p, be), p, be,
                                       padding=stain_padding(padding, stain_sigma(p), be)))
    mask = _nucleus_mask(ho, p, be, thresholds["hoechst"], padding=padding)[0]
    if p.dead_call == "touch":
        mask = mask | _nucleus_mask(be.to_device(np.ascontiguousarray(d7)), p, be, thresholds["draq7"],
                                    padding=padding)[0]
    return float(typical_diameter(mask, be, p.min_nucleus_area))


# --------------------------------------------------------------------------- tiles


#: the halo's outer edge is aligned to this many pixels: OpenCV's filters take a
#: different (SIMD vs scalar) path on a row's last few pixels, so a tile that ends at
#: the mosaic's edge must sit on the same alignment as the whole image for its last
#: columns to come out bit-identical; and a halo at least half of it keeps a core's
#: last columns out of the tail of a window that ends inside the mosaic.
_ALIGN = 64


def _tiles(shape, chunks):
    """``((y0, y1), (x0, x1))`` of every tile's core, row by row."""
    edges = [np.concatenate([[0], np.cumsum(c)]).tolist() for c in chunks]
    return [((edges[0][i], edges[0][i + 1]), (edges[1][j], edges[1][j + 1]))
            for i in range(len(chunks[0])) for j in range(len(chunks[1]))]


def _window(shape, core, depth):
    """The tile's window in the mosaic (core plus halo, clipped, start aligned) and
    ``(core slices inside the window, window origin, core origin, core shape)``."""
    (y0, y1), (x0, x1) = core
    depth = max(depth, _ALIGN // 2)   # past the scalar tail of a row, inside the window too
    wy0, wx0 = max(0, y0 - depth), max(0, x0 - depth)
    wy0, wx0 = wy0 - wy0 % _ALIGN, wx0 - wx0 % _ALIGN
    wy1, wx1 = min(shape[0], y1 + depth), min(shape[1], x1 + depth)
    inner = (slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0))
    return (slice(wy0, wy1), slice(wx0, wx1)), (inner, (wy0, wx0), (y0, x0), (y1 - y0, x1 - x0))


def _value_counts(values):
    values = np.asarray(values).ravel()
    if values.size == 0:
        return values, np.zeros(0, np.int64)
    v, c = np.unique(values, return_counts=True)
    return v, c.astype(np.int64)


def _tile_stats(bf, ho, d7, zero, dim, where, p, backend, shape, diameter):
    """The tile core's share of the threshold statistics: value → count tables, or the contrast grid's values.
    ``zero``: the window's pixels 0 in every channel, and the mosaic's dimmed edge lines (``dim``)."""
    be = get_backend(backend)
    core, origin, (y0, x0), (h, w) = where
    m, n = shape
    c = p.coarseness
    out = {}
    host = be.to_host
    bf_d = be.to_device(np.ascontiguousarray(bf))
    gradient, padding = padded_gradient(bf_d, p.smoothing, be, be.to_device(np.ascontiguousarray(dim)))
    gradient = gradient[core]
    bf_core = bf_d[core]
    if p.cell_threshold == "noise":
        # Immerkær's residual on the image's grid of centres 2, 6, 10, ... < size - 2.
        rows = np.arange(y0 + (2 - y0) % 4, min(y0 + h, m - 2), 4)
        cols = np.arange(x0 + (2 - x0) % 4, min(x0 + w, n - 2), 4)
        rows = rows[rows >= 2] - origin[0]
        cols = cols[cols >= 2] - origin[1]
        f = np.ascontiguousarray(bf).astype(np.float32)
        r = f[rows - 1] - 2 * f[rows] + f[rows + 1]
        residual = np.abs(r[:, cols - 1] - 2 * r[:, cols] + r[:, cols + 1])
        grid = bf[np.ix_(rows, cols)]
        valid = grid > 0
        out["residual"] = _value_counts(residual[valid])
        out["residual_levels"] = grey_levels(grid)
        means = be.block_mean(gradient, c)
        holds = noise_blocks(bf_core, c, be, None if padding is None else padding[core])
        holds = host(holds)[: means.shape[0], : means.shape[1]]
        out["means"] = _value_counts(host(means)[holds])
    else:
        out["gradient_max"] = _value_counts(host(be.block_max(gradient, c)))
    if p.nucleus_threshold == "contrast":
        # `_contrast`'s background-subtracted image, exact in the core, on the global 4-px grid,
        # less the padding (`contrast_sample`).
        ho_d = be.to_device(np.ascontiguousarray(ho))
        padding = stain_padding(_padding(zero, be), stain_sigma(p), be)
        image = smoothed_stain(ho_d, p, be)
        y = contrast_image(image, _BACKGROUND_WIDTH * diameter, be, padding=padding)[core]
        step = contrast_step(shape)
        grid = (slice((-y0) % step, None, step), slice((-x0) % step, None, step))
        y, image = y[grid], image[core][grid]
        if padding is not None:
            kept = ~padding[core][grid]   # a boolean index: a sync on CuPy, padded tiles only
            y, image = y[kept], image[kept]
        out["contrast"] = host(y).ravel()
        out["contrast_levels"] = grey_levels(image, be)
    elif p.nucleus_threshold == "block-max":
        for name, stain in (("hoechst_max", ho), ("draq7_max", d7))[: 1 + (p.dead_call != "ratio")]:
            stain = smoothed_stain(be.to_device(np.ascontiguousarray(stain)), p, be)[core]
            out[name] = _value_counts(host(be.block_max(stain, c)))
    return out


def _tile_background(ho, d7, zero, where, p, backend, shape, threshold, diameter, hoechst=True, box=None):
    """Draq7 (and with ``hoechst`` Hoechst) value counts of the core outside the grown nuclei (`outside_nuclei`)
    and the padding (of ``zero``, the window's pixels 0 in every channel) (and of the whole core); with
    ``box``, the core's `local_background` samples outside them."""
    be = get_backend(backend)
    core = where[0]
    padding = _padding(zero, be)
    ho_mask = _nucleus_mask(be.to_device(np.ascontiguousarray(ho)), p, be, threshold, diameter, padding)[0]
    outside = be.to_host(outside_nuclei(ho_mask, be, padding))[core]
    # `draq7_background` takes the median over every background_step-th row and column.
    (y0, x0) = where[2]
    s = background_step(shape)
    sub = (slice((-y0) % s, None, s), slice((-x0) % s, None, s))
    out = {"any_outside": bool(outside.any())}
    for name, image in (("draq7", d7), ("hoechst", ho))[: 1 + hoechst]:
        values = np.asarray(image)[core]
        out[name] = {"outside": _value_counts(values[sub][outside[sub]]), "all": _value_counts(values[sub])}
        if out["any_outside"] and not out[name]["outside"][0].size:
            # Outside pixels, none on the grid: `draq7_background` then takes all of them
            # when no tile has one on the grid.
            out[name]["outside_all"] = _value_counts(values[outside])
    if box:
        # The mesh's samples on the image's every step-th row and column, and their blocks.
        step = box // _MESH_SAMPLES
        (h, w) = where[3]
        rows = np.arange((-y0) % step, h, step)
        cols = np.arange((-x0) % step, w, step)
        keep = outside[np.ix_(rows, cols)]
        block = ((y0 + rows) // box)[:, None] * -(-shape[1] // box) + ((x0 + cols) // box)[None, :]
        values = np.asarray(d7)[core][np.ix_(rows, cols)][keep]
        # Blocks wholly in this core (the image's edge cutting them or not) are reduced
        # here; the driver gets the samples of those the core shares with other tiles.
        inside = [(lo // box * box >= start) & (np.minimum(lo // box * box + box, n) <= start + size)
                  for lo, start, size, n in ((y0 + rows, y0, h, shape[0]), (x0 + cols, x0, w, shape[1]))]
        mine = (inside[0][:, None] & inside[1][None, :])[keep]
        block = block[keep]
        out["mesh_blocks"] = _block_medians(block[mine], values[mine])
        out["mesh"] = (block[~mine], values[~mine])
    return out


def _block_medians(block, values):
    """Each block's lower median of ``values`` (as `local_background` takes it), and its count."""
    order = np.lexsort((values, block))
    block, values = block[order], values[order]
    ids, first, count = np.unique(block, return_index=True, return_counts=True)
    return ids, values[first + (count - 1) // 2], count


def _mesh_grid(parts, shape, box, fill):
    """`local_background`'s smoothed block values over the mosaic, from the tiles' blocks and samples."""
    rows, cols = -(-shape[0] // box), -(-shape[1] // box)
    median, count = np.full(rows * cols, np.nan), np.zeros(rows * cols, np.int64)
    shared = _block_medians(*(np.concatenate([t["mesh"][i] for t in parts]) for i in (0, 1)))
    for ids, med, n in [shared] + [t["mesh_blocks"] for t in parts]:
        median[ids], count[ids] = med, n
    return mesh_values(median.reshape(rows, cols), count.reshape(rows, cols), fill)


def _outside_median(parts, channel):
    """`draq7_background` of one channel over the mosaic, from the tiles' `_tile_background`."""
    tables = [t[channel] for t in parts]
    # The outside pixels on the grid; all outside pixels when none is on the grid (each
    # tile then sent them); the grid's pixels when none is outside.
    if any(t["outside"][0].size for t in tables):
        table = _merge(tables, "outside")
    else:
        table = _merge(tables, "outside_all" if any(t["any_outside"] for t in parts) else "all")
    return float(max(_rank(table, 0.5), 1.0))


def _crop_bleed(ho, d7, zero, origin, p, backend, thresholds, floor, hoechst_floor, diameter):
    """`find_nuclei`'s "auto" bleed on these (crop) images, at the mosaic's thresholds and backgrounds."""
    be = get_backend(backend)
    ho, d7 = (be.to_device(np.ascontiguousarray(a)) for a in (ho, d7))
    floor = _floor(floor, ho.shape, origin, be)
    return stages.find_nuclei(ho, d7, p, be, hoechst_threshold=thresholds["hoechst"], diameter=diameter,
                              floor=floor, hoechst_floor=hoechst_floor, padding=_padding(zero, be))[0].bleed


def _merge(stats, name):
    parts = [s[name] for s in stats if name in s]
    values = np.concatenate([v for v, _ in parts])
    counts = np.concatenate([c for _, c in parts])
    v, inverse = np.unique(values, return_inverse=True)
    return v, np.bincount(inverse.ravel(), weights=counts, minlength=len(v)).astype(np.int64)


def _rank(table, fraction):
    """`Backend.order_statistic` (rank ``floor(fraction * (n - 1))``) of a value → count table; inf if empty."""
    v, c = table
    total = int(c.sum())
    if total == 0:
        return math.inf
    k = int(fraction * (total - 1))
    return v[int(np.searchsorted(np.cumsum(c), k, side="right"))].item()


def _block_max_threshold(table, dtype, offset):
    v, c = table
    votes = np.bincount(v.astype(np.int64), weights=c, minlength=_BINS[dtype])
    return threshold_value(int(votes[1:].argmax()) + 1, offset)


def _merge_stats(stats, p, ho_dtype, d7_dtype, coverage=(1.0, 1.0)):
    """The global thresholds from the tiles' statistics, and the "contrast" statistics (or None);
    ``coverage``: the mosaic's `stages.gradient.blend_coverage`."""
    contrast = None
    th = {"gradient": None, "gradient_scale": None, "gradient_noise": None, "hoechst": None, "draq7": None}
    if p.cell_threshold == "noise":
        th["gradient"], th["gradient_noise"] = noise_from_statistics(
            _rank(_merge(stats, "residual"), 0.5), _rank(_merge(stats, "means"), FLAT_QUANTILE),
            p.coarseness, p.offset, p.smoothing, p.noise_ceiling,
            grey_step(np.concatenate([s["residual_levels"] for s in stats])), coverage)
    else:
        v, c = _merge(stats, "gradient_max")
        scale = 1.0 if p.gradient_levels is None else max(1.0, float(_rank((v, c), SCALE_QUANTILE)) / p.gradient_levels)
        be = get_backend("cpu")
        levels = be.quantize(v.astype(np.float32), scale)
        th["gradient"] = _block_max_threshold((levels, c), "uint16", p.offset)
        th["gradient_scale"] = scale
    if p.nucleus_threshold == "contrast":
        samples = np.concatenate([s["contrast"] for s in stats])
        grey = grey_step(np.concatenate([s["contrast_levels"] for s in stats]))
        contrast = _contrast_statistics(samples, get_backend("cpu"), sampled=True, grey=grey)
        th["hoechst"] = _level(*contrast, p.nucleus_level, final=True)
    elif p.nucleus_threshold == "block-max":
        th["hoechst"] = _block_max_threshold(_merge(stats, "hoechst_max"), ho_dtype, p.offset)
        if p.dead_call != "ratio":
            th["draq7"] = _block_max_threshold(_merge(stats, "draq7_max"), d7_dtype, p.offset)
    else:
        th["hoechst"] = p.nucleus_threshold
        if p.dead_call != "ratio":
            th["draq7"] = p.nucleus_threshold
    return th, contrast


def _tile_segment(area, ho, d7, zero, where, p, backend, shape, thresholds, floor, hoechst_floor, diameter):
    """The tile's core as ``classes + 8 * global cell label`` (int64), and its ``(n_live, n_dead)``.

    ``area`` is the cell area's ``(core's mask, core)`` pairs (`_cell_area`) that the window overlaps.
    """
    be = get_backend(backend)
    core, origin, (y0, x0), (h, w) = where
    m, n = shape
    window = np.zeros(ho.shape, bool)
    for mask, ((cy0, cy1), (cx0, cx1)) in area:
        top, left = max(cy0, origin[0]), max(cx0, origin[1])
        bottom, right = min(cy1, origin[0] + ho.shape[0]), min(cx1, origin[1] + ho.shape[1])
        window[top - origin[0]:bottom - origin[0], left - origin[1]:right - origin[1]] = \
            mask[top - cy0:bottom - cy0, left - cx0:right - cx0]
    area, ho_d, d7_d = (be.to_device(np.ascontiguousarray(a)) for a in (window, ho, d7))
    floor = _floor(floor, ho_d.shape, origin, be)
    nuc = stages.find_nuclei(ho_d, d7_d, p, be, hoechst_threshold=thresholds["hoechst"],
                             draq7_threshold=thresholds["draq7"], diameter=diameter, floor=floor,
                             hoechst_floor=hoechst_floor, bleed=thresholds["bleed"], padding=_padding(zero, be))[0]
    labels, dead = nuc.labels, nuc.dead
    cells, outlines = stages.separate_cells(area, labels, be, p.separation)
    classes = stages.class_mask(cells, outlines, labels, dead, be)
    # Global numbers: 1 + the mosaic raster index of each nucleus' first pixel. Raster
    # order in the tile is raster order in the mosaic, so the first is the first found.
    lab = be.to_host(labels)
    where = labelled(lab, np)
    ids, first = np.unique(lab.ravel()[where], return_index=True)
    first = where[first]
    ty, tx = np.divmod(first, lab.shape[1])
    gy, gx = ty + origin[0], tx + origin[1]
    owned = (gy >= y0) & (gy < y0 + h) & (gx >= x0) & (gx < x0 + w)
    is_dead = be.to_host(dead)[ids][owned]
    lut = np.zeros(int(lab.max()) + 1 if lab.size else 1, np.int64)
    lut[ids] = gy.astype(np.int64) * n + gx + 1
    packed = lut[be.to_host(cells)[core]] * 8 + be.to_host(classes)[core]
    return packed, (int((~is_dead).sum()), int(is_dead.sum()))


def _overlap(core, win):
    """Whether a core ``((y0, y1), (x0, x1))`` and a window (two slices) share a pixel."""
    return all(a0 < w.stop and w.start < a1 for (a0, a1), w in zip(core, win))


def _cell_area(bf, dim, p, backend, shape, chunks, tiles, thresholds, compute_kwargs):
    """The mosaic's cell area, as `stages.cell_area` of the whole: per tile, a Delayed (h, w) bool core.

    Its holes are the background (4-connected, as `Backend.fill_holes` floods)
    not connected to the mosaic's edge, which may span many tiles: each tile
    numbers the background components of its core's closed mask
    (`stages.closed_area`, exact in the core with the gradient's and the
    closing's halo) and sends their numbers along its four edges; the driver
    joins the components that touch across the tiles' seams, and those on the
    mosaic's edge, into the background open to the edge (`_open_background`);
    each tile then fills the rest. The closed mask is made twice (for the
    seams, then for the fill) rather than held between the passes.
    """
    import dask

    depth = gradient_reach(p.smoothing) + (p.kernel_size // 2) * (p.dilations + p.erosions) + 2
    windows = [_window(shape, core, depth) for core in tiles]
    seams = dask.delayed(_tile_seams, pure=True)
    (parts,) = dask.compute([seams(bf[win], dim[win], where, p, backend, thresholds) for win, where in windows],
                            **compute_kwargs)
    luts = _open_background(parts, chunks, shape)
    fill = dask.delayed(_tile_area, pure=True)
    return [fill(bf[win], dim[win], where, p, backend, thresholds, lut) for (win, where), lut in zip(windows, luts)]


def _core_background(bf, dim, where, p, be, thresholds):
    """The tile core's closed-mask background components (4-connected), their number, and its padding."""
    area = stages.closed_area(be.to_device(np.ascontiguousarray(bf)), p, be, threshold=thresholds["gradient"],
                              scale=thresholds["gradient_scale"], dim=be.to_device(np.ascontiguousarray(dim)))
    core = where[0]
    labels, n = be.label(~area.mask[core], connectivity=4)
    return labels, n, None if area.padding is None else area.padding[core]


def _tile_seams(bf, dim, where, p, backend, thresholds):
    """``(n, top, bottom, left, right)``: the number of the core's background components and
    their numbers (0 for the closed mask) along the core's four edges, host int32."""
    be = get_backend(backend)
    labels, n, _ = _core_background(bf, dim, where, p, be, thresholds)
    edges = be.to_host(labels[0]), be.to_host(labels[-1]), be.to_host(labels[:, 0]), be.to_host(labels[:, -1])
    return (n, *edges)


def _open_background(parts, chunks, shape):
    """Per tile, a bool table over its background numbers (`_tile_seams`): True where the
    component belongs to the background connected to the mosaic's edge; False at 0."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = len(chunks[0]), len(chunks[1])
    # Node 0 is the mosaic's edge; tile k's component l is node offset[k] + l.
    offset = np.concatenate([[0], np.cumsum([part[0] for part in parts])])
    pairs = []

    def join(a, b, k, j):
        both = (a > 0) & (b > 0)
        pairs.append(np.stack([a[both] + offset[k], b[both] + offset[j]]))

    for k, (n, top, bottom, left, right) in enumerate(parts):
        i, j = divmod(k, cols)
        for line, on_edge in ((top, i == 0), (bottom, i == rows - 1), (left, j == 0), (right, j == cols - 1)):
            if on_edge:
                ends = line[line > 0] + offset[k]
                pairs.append(np.stack([np.zeros_like(ends), ends]))
        if j + 1 < cols:
            join(right, parts[k + 1][3], k, k + 1)
        if i + 1 < rows:
            join(bottom, parts[k + cols][1], k, k + cols)
    edges = np.unique(np.concatenate(pairs, axis=1), axis=1) if pairs else np.zeros((2, 0), np.int64)
    nodes = int(offset[-1]) + 1
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), (edges[0], edges[1])), shape=(nodes, nodes))
    _, component = connected_components(graph, directed=False)
    open_ = component == component[0]
    luts = []
    for k, (n, *_) in enumerate(parts):
        lut = open_[offset[k]: offset[k] + n + 1].copy()
        lut[0] = False
        luts.append(lut)
    return luts


def _tile_area(bf, dim, where, p, backend, thresholds, lut):
    """The core's cell area: all but the background open to the mosaic's edge (``lut``), padding cleared."""
    be = get_backend(backend)
    labels, _, padding = _core_background(bf, dim, where, p, be, thresholds)
    area = ~be.to_device(lut)[labels]
    if padding is not None:
        area &= ~padding  # as `stages.cell_area`: no image, so no cell
    return be.to_host(area)


def _floor(floor, shape, origin, be):
    """The Draq7 background for `find_nuclei`: a number, or a ``(grid, box)`` mesh as the window's image."""
    if isinstance(floor, tuple):
        grid, box = floor
        return mesh_image(grid, box, shape, origin, be)
    return floor
