"""Synthetic live/dead-assay frames, time series and plates with ground truth.

Each frame has a brightfield, a Hoechst (all nuclei) and a Draq7 (dead nuclei)
channel, the five-class mask the segmentation should produce (0 background,
1 cell area, 2 cell outline, 3 Hoechst nucleus, 4 Draq7 nucleus) and the cell and
nucleus instance labels it was drawn from.

The frames are made for the block-max threshold: most 16 x 16 blocks hold no cell,
brightfield cells have a dark rim, a bright halo and a textured interior whose
Sobel gradient stands well above the camera noise of the background, and nuclei
are bright on a dark background. Cells are placed by rejection sampling: a share
of them in touching pairs (the shared boundary split by nearest centre, relative
to each cell's size), the rest apart, ``gap`` px at least; a negative ``gap``
packs them into a confluent sheet (the fields the block-max cell threshold fails
on). Only NumPy and OpenCV are used.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["SyntheticFrame", "make_frame", "make_timeseries", "make_plate", "write_plate"]

BIT_DEPTHS = (8, 12, 16)
MIN_SIDE = 32

# Cell shape: an ellipse of equal area to a disc of radius r, times a smooth
# radial wave of harmonics 2..5.
_HARMONICS = np.arange(2, 6)
_WAVE = 0.08
_ANGLES = np.linspace(0, 2 * np.pi, 64, endpoint=False)
_GAP = 8.0              # px between the bounding circles of cells that do not touch
_OVERLAP = (0.8, 0.9)   # centre distance of a touching pair / sum of radii towards each other
_NUCLEUS = (0.35, 0.5)  # nucleus diameter / cell diameter
_NUCLEUS_CLIP = 0.75    # nucleus stays within this fraction of the cell radius
_CONTACT = (0.0, 2.0)   # px past the cells' boundary a touching nucleus reaches before it is cut there
_TRIES = 20
_CANDIDATES = 64

# Intensities as fractions of full scale (2**bit_depth - 1).
_BF_LEVEL = 0.4
_ILLUMINATION = (0.08, 0.15)
_RIM, _HALO = 0.35, 0.15
_CYTOPLASM, _TEXTURE, _GRAIN, _BF_NUCLEUS = -0.04, 0.08, 0.05, 0.06
_BF_DEAD = 0.08
_HOECHST, _HOECHST_OFFSET = 0.45, 0.02
_DRAQ7, _DRAQ7_OFFSET, _BLEED = 0.5, 0.005, 0.005
_READ_NOISE, _FULL_WELL = 0.003, 20000.0


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One synthetic frame and its ground truth.

    Attributes
    ----------
    brightfield, hoechst, draq7 : (M, N) uint16 ndarray
        The three channels, each in ``[0, 2**bit_depth - 1]``.
    classes : (M, N) uint8 ndarray
        Ground-truth class mask, painted in order: 1 cell area, 2 cell outline (a
        cell pixel with a 4-neighbour of another label, background included; the
        image frame is not an outline), 3 nucleus of a live cell, 4 nucleus of a
        dead cell.
    cells : (M, N) int32 ndarray
        Cell instance labels, 0 background, 1..n.
    nuclei : (M, N) int32 ndarray
        Nucleus instance labels, each the id of the cell that holds it.
    dead : (n + 1,) bool ndarray
        ``dead[i]`` is True when cell ``i`` is dead; ``dead[0]`` is False.
    time : int
        Time index of the frame (0 for a single frame).
    """

    brightfield: np.ndarray
    hoechst: np.ndarray
    draq7: np.ndarray
    classes: np.ndarray
    cells: np.ndarray
    nuclei: np.ndarray
    dead: np.ndarray
    time: int

    @property
    def n_live(self) -> int:
        """Number of live cells in the frame."""
        return int(np.count_nonzero(~self.dead[1:]))

    @property
    def n_dead(self) -> int:
        """Number of dead cells in the frame."""
        return int(np.count_nonzero(self.dead[1:]))


@dataclass(frozen=True, eq=False)
class _Layout:
    cells: np.ndarray       # (M, N) int32
    nuclei: np.ndarray      # (M, N) int32
    outline: np.ndarray     # (M, N) bool
    base: np.ndarray        # (M, N) float32 brightfield before death, blur and noise
    stain: np.ndarray       # (M, N) float32 nucleus profile, 0 outside nuclei
    hoechst: np.ndarray     # (n + 1,) float32 per-cell Hoechst level
    draq7: np.ndarray       # (n + 1,) float32 per-cell Draq7 level

    @property
    def n(self) -> int:
        return len(self.hoechst) - 1


def make_frame(shape=(256, 256), n_cells=20, dead_fraction=0.3, bit_depth=12, seed=0, *,
               cell_radius=(9.0, 16.0), touching=0.3, gap=_GAP, touching_nuclei=0.0) -> SyntheticFrame:
    """Make one synthetic live/dead frame with ground truth.

    Parameters
    ----------
    shape : tuple of 2 int, optional
        ``(M, N)``, each at least 32.
    n_cells : int, optional
        Cells to place (>= 0). Cells that find no free place (a frame too crowded)
        are left out with a ``UserWarning``; ``n_live + n_dead`` says how many were
        drawn.
    dead_fraction : float, optional
        Share of the cells that are dead, in [0, 1]; ``round(dead_fraction * n)``
        cells, chosen at random.
    bit_depth : {8, 12, 16}, optional
        Camera bit depth; values lie in ``[0, 2**bit_depth - 1]``.
    seed : int, numpy.random.SeedSequence or None, optional
        Seed of ``numpy.random.default_rng``; equal seeds give equal frames.
    cell_radius : tuple of 2 float, optional
        Range of the cells' equivalent radii in px, ``4 <= low <= high`` (a smaller
        cell would have no room for its nucleus). The default
        gives diameters of 18-32 px: the default 20 cells cover about 15 % of
        a 256 x 256 frame and leave about 60 % of its 16 x 16 blocks empty.
    touching : float, optional
        Share of the cells placed in touching pairs, in [0, 1].
    touching_nuclei : float, optional
        Share of the touching pairs whose nuclei touch too, in [0, 1] (0 by default:
        every nucleus lies 2 px or more inside its cell's outline). Each nucleus of
        such a pair is moved towards the other until it reaches 0-2 px (at random)
        past the cells' shared boundary, and cut there: a contact from a point to a
        flattened chord, the outline under it hidden as the class mask's precedence
        hides it. Each nucleus keeps its own intensity dome, so a dimmer line parts
        them.
    gap : float, optional
        Least distance in px between the bounding circles of cells placed apart
        (8 by default: a sparse field, at most about a third of it covered). 0 lets
        them touch; a negative gap, down to ``-cell_radius[0]``, packs them into a
        confluent sheet of any cluster size (``gap=-9`` with enough cells covers
        over 80 %), each cell keeping the pixels nearer its own outline, in one
        piece, with its nucleus (a cell squeezed to no room for one is left out).

    Returns
    -------
    SyntheticFrame
        With ``time = 0``. Dead cells died 0-4 frames ago: their Hoechst is 30-50 %
        of a live cell's, their Draq7 70-100 % of full strength.

    Raises
    ------
    ValueError
        For an argument out of range, naming it and the value given.
    """
    shape = _check_shape(shape)
    n_cells = _check_int(n_cells, "n_cells", 0)
    dead_fraction = _check_fraction(dead_fraction, "dead_fraction")
    full = _check_bit_depth(bit_depth)
    cell_radius = _check_radius(cell_radius)
    touching = _check_fraction(touching, "touching")
    gap = _check_gap(gap, cell_radius)
    touching_nuclei = _check_fraction(touching_nuclei, "touching_nuclei")
    layout_seq, state_seq, noise_seq = _seq(seed).spawn(3)

    layout = _layout(shape, n_cells, cell_radius, touching, np.random.default_rng(layout_seq), gap,
                     touching_nuclei)
    rng = np.random.default_rng(state_seq)
    n = layout.n
    dead = np.zeros(n + 1, bool)
    dead[1 + rng.permutation(n)[:round(dead_fraction * n)]] = True
    since = np.where(dead, rng.integers(0, 5, n + 1), 0)
    return _render(layout, dead, since, full, np.random.default_rng(noise_seq), 0)


def make_timeseries(shape=(256, 256), n_cells=20, n_times=5, bit_depth=12, death_rate=0.15,
                    seed=0, *, cell_radius=(9.0, 16.0), touching=0.3, gap=_GAP,
                    touching_nuclei=0.0) -> list[SyntheticFrame]:
    """Make a time series of one field of view in which cells die.

    All cells are alive at ``t = 0``; each dies at frame ``T >= 1`` drawn with a
    constant hazard ``death_rate`` per frame (geometric), and stays dead. The cells
    do not move. From the frame of death on, Draq7 shows in the nucleus (70 % at
    once, rising to full) and Hoechst fades from 50 % to 30 % of its live level.

    Parameters
    ----------
    shape, n_cells, bit_depth, cell_radius, touching, gap, touching_nuclei
        As in `make_frame`.
    n_times : int, optional
        Number of frames (>= 1).
    death_rate : float, optional
        Probability per frame that a live cell dies, in [0, 1].
    seed : int, numpy.random.SeedSequence or None, optional
        Seeds the layout, the death times and each frame's camera noise; frame ``t``
        does not depend on ``n_times``.

    Returns
    -------
    list of SyntheticFrame
        ``n_times`` frames with ``time = 0 .. n_times - 1`` sharing one layout
        (``cells``, ``nuclei``); ``dead`` is non-decreasing in time.

    Raises
    ------
    ValueError
        For an argument out of range, naming it and the value given.
    """
    shape = _check_shape(shape)
    n_cells = _check_int(n_cells, "n_cells", 0)
    n_times = _check_int(n_times, "n_times", 1)
    full = _check_bit_depth(bit_depth)
    death_rate = _check_fraction(death_rate, "death_rate")
    cell_radius = _check_radius(cell_radius)
    touching = _check_fraction(touching, "touching")
    gap = _check_gap(gap, cell_radius)
    touching_nuclei = _check_fraction(touching_nuclei, "touching_nuclei")
    layout_seq, state_seq, frames_seq = _seq(seed).spawn(3)

    layout = _layout(shape, n_cells, cell_radius, touching, np.random.default_rng(layout_seq), gap,
                     touching_nuclei)
    n = layout.n
    rng = np.random.default_rng(state_seq)
    death = np.full(n + 1, np.inf)
    if death_rate > 0:
        death[1:] = rng.geometric(death_rate, n)
    out = []
    for t, noise_seq in enumerate(frames_seq.spawn(n_times)):
        dead = death <= t
        since = np.where(dead, t - np.where(dead, death, 0), 0)
        out.append(_render(layout, dead, since, full, np.random.default_rng(noise_seq), t))
    return out


def make_plate(wells=("A1", "A2"), sites=1, n_times=3, shape=(256, 256), n_cells=20, bit_depth=12,
               seed=0, *, death_rates=None, cell_radius=(9.0, 16.0),
               touching=0.3, gap=_GAP, touching_nuclei=0.0) -> dict[tuple[str, int, int], SyntheticFrame]:
    """Make a plate: a time series per well and site, with a dose series of death rates.

    Parameters
    ----------
    wells : sequence of str, optional
        Distinct well names, at least one.
    sites : int, optional
        Fields of view per well (>= 1), numbered from 0.
    n_times, shape, n_cells, bit_depth, cell_radius, touching, gap, touching_nuclei
        As in `make_timeseries`.
    seed : int, numpy.random.SeedSequence or None, optional
        Each (well, site) gets its own layout and noise from it.
    death_rates : sequence of float, optional
        Death rate per frame of each well, in [0, 1]. By default a dose series
        rising linearly from 0.02 (the first well, untreated) to 0.5 (the last).

    Returns
    -------
    dict of (str, int, int) to SyntheticFrame
        Keyed by ``(well, site, time)``, wells in the order given, sites and times
        from 0.

    Raises
    ------
    ValueError
        For an argument out of range, naming it and the value given.
    """
    if isinstance(wells, str) or not isinstance(wells, Sequence) or len(wells) == 0:
        raise ValueError(f"wells must be a non-empty sequence of well names, got {wells!r}")
    if not all(isinstance(w, str) for w in wells) or len(set(wells)) != len(wells):
        raise ValueError(f"wells must be distinct strings, got {wells!r}")
    sites = _check_int(sites, "sites", 1)
    if death_rates is None:
        death_rates = np.linspace(0.02, 0.5, len(wells)) if len(wells) > 1 else [0.02]
    elif np.ndim(death_rates) != 1 or len(death_rates) != len(wells):
        raise ValueError(
            f"death_rates must give one rate per well ({len(wells)}), got {death_rates!r}")
    else:  # all checked before any frame is made
        death_rates = [_check_fraction(r, f"death_rates[{i}]") for i, r in enumerate(death_rates)]
    seqs = iter(_seq(seed).spawn(len(wells) * sites))
    plate = {}
    for well, rate in zip(wells, death_rates):
        for site in range(sites):
            frames = make_timeseries(shape, n_cells, n_times, bit_depth, rate, next(seqs),
                                     cell_radius=cell_radius, touching=touching, gap=gap,
                                     touching_nuclei=touching_nuclei)
            plate.update({(well, site, f.time): f for f in frames})
    return plate


#: `write_plate`'s channel names, as Gen5/Cytation names its filters
GEN5_NAMES = {"brightfield": "Bright Field", "hoechst": "DAPI", "draq7": "Cy5"}


def write_plate(plate: Mapping, folder) -> Path:
    """Write a plate of `make_plate` as an imager does: Gen5/Cytation single-channel TIFFs.

    ``{well}_02_{channel}_{site}_{name}_{time}.tif``: channel 1 "Bright Field", 2
    "DAPI" (Hoechst), 3 "Cy5" (Draq7); site and time numbered from 1 (the time in
    three digits), as `livedead_gpu.io.open_plate` reads them, so that ``livedead-gpu
    segment FOLDER -o OUT`` segments the plate. Each file is written atomically.

    Parameters
    ----------
    plate : dict of (str, int, int) to SyntheticFrame
        As `make_plate` returns: keyed by ``(well, site, time)``, sites and times from 0.
    folder : path-like
        Made when missing.

    Returns
    -------
    Path
        ``folder``.
    """
    from .io import write_tiff

    folder = Path(folder)
    for (well, site, time), frame in plate.items():
        for c, (role, name) in enumerate(GEN5_NAMES.items(), 1):
            write_tiff(folder / f"{well}_02_{c}_{site + 1}_{name}_{time + 1:03d}.tif", getattr(frame, role))
    return folder


def _layout(shape, n_cells, cell_radius, touching, rng, gap=_GAP, touching_nuclei=0.0) -> _Layout:
    n = n_cells
    r = rng.uniform(*cell_radius, n)
    aspect = rng.uniform(0.7, 1.0, n)
    theta = rng.uniform(0, np.pi, n)
    wave = rng.uniform(-1, 1, (n, len(_HARMONICS))) * _WAVE / (_HARMONICS - 1)
    phase = rng.uniform(0, 2 * np.pi, (n, len(_HARMONICS)))
    shape_of = [(r[i], aspect[i], theta[i], wave[i], phase[i]) for i in range(n)]
    bound = _radius(r[:, None], aspect[:, None], theta[:, None], wave[:, None], phase[:, None],
                    _ANGLES).max(axis=1)

    nuc_r = r * rng.uniform(*_NUCLEUS, n)
    nuc_aspect = rng.uniform(0.75, 1.0, n)
    nuc_theta = theta + rng.normal(0, 0.3, n)
    margin = nuc_r / np.sqrt(nuc_aspect) + 2

    n_pairs = min(int(round(touching * n / 2)), n // 2)
    units = [np.array([2 * k, 2 * k + 1]) for k in range(n_pairs)]
    units += [np.array([i]) for i in range(2 * n_pairs, n)]
    offsets = []
    for u in units:
        off = np.zeros((len(u), 2))
        if len(u) == 2:
            phi = rng.uniform(0, 2 * np.pi)
            reach = _radius(*shape_of[u[0]], phi) + _radius(*shape_of[u[1]], phi + np.pi)
            off[1] = rng.uniform(*_OVERLAP) * reach * np.array([np.sin(phi), np.cos(phi)])
        offsets.append(off)
    centres = _place(shape, units, offsets, bound, margin, rng, gap)
    drawn = np.flatnonzero(~np.isnan(centres[:, 0]))

    cells = np.zeros(shape, np.int32)
    nuclei = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf, np.float32)
    boxes = []
    for label, i in enumerate(drawn, 1):
        box, dy, dx = _box(shape, centres[i], bound[i] + 1)
        s = np.hypot(dy, dx) / _radius(*shape_of[i], np.arctan2(dy, dx))
        claim = (s <= 1) & (s < best[box])
        best[box][claim] = s[claim]
        cells[box][claim] = label
        boxes.append((box, dy, dx, s))
    for label, (box, dy, dx, _) in enumerate(boxes, 1):
        # Packed cells (a negative gap): a neighbour's territory can cut one in two. It keeps
        # the piece round its centre; the rest is background.
        mine = cells[box] == label
        n_parts, parts = cv2.connectedComponents(mine.astype(np.uint8), connectivity=4)
        if n_parts > 2:
            centre = np.unravel_index(np.argmin(np.hypot(dy, dx) + np.where(mine, 0, np.inf)), mine.shape)
            cells[box][mine & (parts != parts[centre])] = 0
    outline = _outline(cells)
    core = _distance((cells > 0) & ~outline) >= 2
    partner, past = {}, {}   # index -> the pair's other cell, and how far past the boundary the nucleus reaches
    if touching_nuclei > 0:
        label_of = {i: label for label, i in enumerate(drawn, 1)}
        chosen, depth = rng.random(n_pairs) < touching_nuclei, rng.uniform(*_CONTACT, n_pairs)
        for k in np.flatnonzero(chosen):
            if 2 * k in label_of and 2 * k + 1 in label_of:
                partner[2 * k], partner[2 * k + 1] = 2 * k + 1, 2 * k
                past[2 * k] = past[2 * k + 1] = depth[k]
    for label, (i, (box, dy, dx, s)) in enumerate(zip(drawn, boxes), 1):
        c, sn = np.cos(nuc_theta[i]), np.sin(nuc_theta[i])
        a, b = nuc_r[i] / np.sqrt(nuc_aspect[i]), nuc_r[i] * np.sqrt(nuc_aspect[i])
        room = (s <= _NUCLEUS_CLIP) & core[box]
        if i in partner:
            j = partner[i]
            (ty, tx), far = centres[j] - centres[i], np.hypot(*(centres[j] - centres[i]))
            phi = np.arctan2(ty, tx)
            # The cells' boundary on the line between their centres (where each one's radius
            # fraction is equal), and this nucleus's own reach along that line: moved so that it
            # reaches past[i] px past the boundary, then cut to its cell beside the partner.
            ri, rj = _radius(*shape_of[i], phi), _radius(*shape_of[j], phi + np.pi)
            reach = 1 / np.hypot(np.cos(phi - nuc_theta[i]) / a, np.sin(phi - nuc_theta[i]) / b)
            shift = max(far * ri / (ri + rj) - reach + past[i], 0.0)
            dx, dy = dx - shift * np.cos(phi), dy - shift * np.sin(phi)
            room = core[box] | (_distance(cells[box] != label_of[j]) <= 3)
        inside = ((dx * c + dy * sn) / a) ** 2 + ((dy * c - dx * sn) / b) ** 2 <= 1
        inside &= room & (cells[box] == label)
        nuclei[box][inside] = label
    held = np.zeros(len(drawn) + 1, bool)
    held[nuclei] = True
    held[0] = False
    if not held[1:].all():
        # Packed tight (a negative gap, the smallest cells): a cell squeezed to no room for its
        # nucleus is left out, its pixels background.
        keep = np.zeros(len(drawn) + 1, np.int32)
        keep[held] = np.arange(1, np.count_nonzero(held) + 1)
        cells, nuclei = keep[cells], keep[nuclei]
        outline = _outline(cells)
        drawn = drawn[held[1:]]
    if len(drawn) < n:
        warnings.warn(f"placed {len(drawn)} of n_cells={n} cells: the frame is too crowded",
                      stacklevel=3)

    stain = _stain(nuclei, rng)
    base = _brightfield_base(cells, nuclei, outline, rng)
    hoechst = np.append(0, _HOECHST * rng.lognormal(0, 0.15, len(drawn))).astype(np.float32)
    draq7 = np.append(0, _DRAQ7 * rng.lognormal(0, 0.15, len(drawn))).astype(np.float32)
    return _Layout(cells, nuclei, outline, base, stain, hoechst, draq7)


def _radius(r, aspect, theta, wave, phase, phi):
    """Radius of a cell's boundary at angle ``phi`` (broadcasting)."""
    phi = np.asarray(phi, np.float32)
    a, b = r / np.sqrt(aspect), r * np.sqrt(aspect)
    ellipse = a * b / np.hypot(b * np.cos(phi - theta), a * np.sin(phi - theta))
    ripple = (wave * np.cos(phi[..., None] * _HARMONICS + phase)).sum(axis=-1)
    return ellipse * (1 + ripple)


def _place(shape, units, offsets, bound, margin, rng, gap):
    """Centres (row, col) by rejection sampling; NaN where a unit found no room."""
    dims = np.array(shape, float)
    centres = np.full((len(bound), 2), np.nan)
    # The cells placed, bucketed on a grid whose squares are as wide as any two cells can
    # reach towards each other: a candidate is checked against the 3 x 3 squares around it
    # only, with the same arithmetic as against all (the frames do not change).
    side = max(2 * float(bound.max(initial=0)) + gap, 1.0)
    rows, cols = int(dims[0] // side) + 1, int(dims[1] // side) + 1
    grid = np.full((rows + 2, cols + 2, 4), -1, np.int64)   # padded by a ring of empty squares
    fill = np.zeros((rows + 2, cols + 2), np.int64)
    placed_c, placed_r = np.empty((0, 2)), np.empty(0)
    for u, off in zip(units, offsets):
        lo = margin[u][:, None]
        hi = dims - 1 - margin[u][:, None]
        if (hi < lo).any():  # a nucleus wider than the frame: no room at all
            continue
        for _ in range(_TRIES):
            first = rng.uniform(lo[0], hi[0], (_CANDIDATES, 2))
            cand = first[:, None] + off                                   # (K, u, 2)
            ok = ((cand >= lo) & (cand <= hi)).all(axis=(1, 2))
            if len(placed_r):
                if 9 * grid.shape[2] >= len(placed_r):
                    # the 3 x 3 squares' slots outnumber the cells placed (a frame a few
                    # squares wide): against all of them
                    near = np.broadcast_to(np.arange(len(placed_r)), (*cand.shape[:2], len(placed_r)))
                else:
                    g = np.clip((cand // side).astype(np.int64), 0, [rows - 1, cols - 1]) + 1   # (K, u, 2)
                    near = np.stack([grid[g[..., 0] + dy, g[..., 1] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)],
                                    axis=2).reshape(*g.shape[:2], -1)           # (K, u, 9 * depth)
                dist = np.linalg.norm(cand[:, :, None] - placed_c[near], axis=-1)
                clear = (dist - bound[u][:, None] - placed_r[near] >= gap) | (near < 0)
                ok &= clear.all(axis=(1, 2))
            if ok.any():
                centres[u] = cand[np.argmax(ok)]
                for i in u:
                    gy, gx = (min(max(int(v), 0), n - 1) + 1 for v, n in zip(centres[i] // side, (rows, cols)))
                    if fill[gy, gx] == grid.shape[2]:
                        grid = np.concatenate([grid, np.full_like(grid, -1)], axis=2)
                    grid[gy, gx, fill[gy, gx]] = len(placed_r) + (i - u[0])
                    fill[gy, gx] += 1
                placed_c = np.vstack([placed_c, centres[u]])
                placed_r = np.concatenate([placed_r, bound[u]])
                break
    return centres


def _box(shape, centre, reach):
    """Slice of the bounding box around ``centre`` and pixel offsets (dy, dx) in it."""
    lo = np.maximum(np.floor(centre - reach).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    dy = (np.arange(lo[0], hi[0]) - centre[0]).astype(np.float32)[:, None]
    dx = (np.arange(lo[1], hi[1]) - centre[1]).astype(np.float32)[None, :]
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1])), dy, dx


def _outline(labels, background=True):
    """Labelled pixels with a 4-neighbour of another label (the image frame is not one);
    without ``background``, of another label but 0 (where two objects meet)."""
    edge = np.zeros(labels.shape, bool)
    dv = labels[1:] != labels[:-1]
    dh = labels[:, 1:] != labels[:, :-1]
    if not background:
        dv &= (labels[1:] > 0) & (labels[:-1] > 0)
        dh &= (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    edge[1:] |= dv
    edge[:-1] |= dv
    edge[:, 1:] |= dh
    edge[:, :-1] |= dh
    return edge & (labels > 0)


def _smooth_noise(shape, sigma, rng):
    """Gaussian-smoothed white noise with unit standard deviation, float32."""
    field = cv2.GaussianBlur(rng.standard_normal(shape, np.float32), (0, 0), sigma)
    return field / max(float(field.std()), 1e-6)


def _distance(mask):
    """Distance of each ``mask`` pixel to the nearest non-mask pixel, capped at 64."""
    return np.minimum(cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5), 64)


def _stain(nuclei, rng):
    """Nucleus profile: a dome from each nucleus's edge inwards with some texture, 0 outside."""
    inside = nuclei > 0
    # Where two nuclei touch, each one's dome falls to its edge there as at its other edges.
    parted = _outline(nuclei, background=False)
    depth = _distance(inside & ~parted)
    depth[parted] = 1
    dome = 0.3 + 0.7 * np.minimum((depth - 1) / 3, 1)
    return (dome * (1 + 0.12 * _smooth_noise(nuclei.shape, 1.0, rng))) * inside


def _brightfield_base(cells, nuclei, outline, rng):
    """Noise-free brightfield (fraction of full scale) of live cells, before optics blur."""
    m, n = cells.shape
    fg = cells > 0
    d_in = _distance(fg & ~outline)
    d_out = _distance(~fg)
    rim = np.exp(-((d_in + 0.5) / 1.3) ** 2) * fg
    halo = np.exp(-((d_out - 0.5) / 1.0) ** 2) * ~fg
    interior = (_CYTOPLASM + _TEXTURE * _smooth_noise((m, n), 1.0, rng)
                + _GRAIN * _smooth_noise((m, n), 3.0, rng)) * fg
    nucleus = _BF_NUCLEUS * cv2.GaussianBlur((nuclei > 0).astype(np.float32), (0, 0), 1.5)

    v = np.linspace(-1, 1, m, dtype=np.float32)[:, None]
    u = np.linspace(-1, 1, n, dtype=np.float32)[None, :]
    c = rng.normal(0, 1, 5).astype(np.float32)
    poly = c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v
    poly -= poly.mean()
    poly *= rng.uniform(*_ILLUMINATION) / max(float(np.abs(poly).max()), 1e-6)
    return _BF_LEVEL * (1 + poly) * (1 - _RIM * rim + _HALO * halo + interior + nucleus)


def _render(layout, dead, since, full, rng, time) -> SyntheticFrame:
    """Channels and class mask of ``layout`` with cells ``dead`` for ``since`` frames."""
    cells, nuclei = layout.cells, layout.nuclei
    fade = np.where(dead, 0.3 + 0.2 * np.exp(-since / 2), 1).astype(np.float32)
    rise = np.where(dead, 1 - 0.3 * np.exp(-since.astype(float)), 0).astype(np.float32)

    bf = layout.base * (1 - _BF_DEAD * dead.astype(np.float32))[cells]
    bf = cv2.GaussianBlur(bf, (0, 0), 0.8)
    hoechst = cv2.GaussianBlur((layout.hoechst * fade)[nuclei] * layout.stain, (0, 0), 0.6)
    draq7 = cv2.GaussianBlur((layout.draq7 * rise)[nuclei] * layout.stain, (0, 0), 0.6)
    draq7 += _DRAQ7_OFFSET + _BLEED * hoechst
    hoechst += _HOECHST_OFFSET

    classes = (cells > 0).astype(np.uint8)
    classes[layout.outline] = 2
    classes[nuclei > 0] = np.where(dead, 4, 3).astype(np.uint8)[nuclei[nuclei > 0]]
    return SyntheticFrame(
        brightfield=_camera(bf, full, rng), hoechst=_camera(hoechst, full, rng),
        draq7=_camera(draq7, full, rng), classes=classes, cells=cells, nuclei=nuclei,
        dead=dead.copy(), time=time)


def _camera(signal, full, rng):
    """Shot (Gaussian approximation) and read noise; quantised to ``[0, full]`` uint16."""
    sd = np.sqrt(_READ_NOISE ** 2 + np.maximum(signal, 0) / _FULL_WELL)
    out = (signal + sd * rng.standard_normal(signal.shape, np.float32)) * full
    return np.clip(np.rint(out), 0, full).astype(np.uint16)


def _seq(seed):
    if isinstance(seed, np.random.SeedSequence):
        # A copy: spawning from the caller's own would change what it gives the next time.
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size,
                                      n_children_spawned=seed.n_children_spawned)
    try:
        return np.random.SeedSequence(seed)
    except (TypeError, ValueError):
        raise ValueError(f"seed must be None, an int >= 0, a sequence of them or a numpy.random.SeedSequence, "
                         f"got {seed!r}") from None


def _check_shape(shape):
    try:
        m, n = (operator.index(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be two ints >= {MIN_SIDE}, got {shape!r}") from None
    if m < MIN_SIDE or n < MIN_SIDE:
        raise ValueError(f"shape must be two ints >= {MIN_SIDE}, got {shape!r}")
    return m, n


def _check_int(value, name, low):
    try:
        v = operator.index(value)
    except TypeError:
        v = None
    if v is None or isinstance(value, bool) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return v


def _check_fraction(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = np.nan
    if not 0 <= v <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return v


def _check_bit_depth(bit_depth):
    if bit_depth not in BIT_DEPTHS or isinstance(bit_depth, bool):
        raise ValueError(f"bit_depth must be one of {{8, 12, 16}}, got {bit_depth!r}")
    return 2 ** int(bit_depth) - 1


def _check_gap(gap, cell_radius):
    if isinstance(gap, bool) or not isinstance(gap, (int, float, np.integer, np.floating)) \
            or not -cell_radius[0] <= gap <= 1000:
        raise ValueError(f"gap must be a number of px in [-cell_radius[0], 1000] = [{-cell_radius[0]:g}, 1000], "
                         f"got {gap!r}")
    return float(gap)


def _check_radius(cell_radius):
    try:
        lo, hi = (float(x) for x in cell_radius)
    except (TypeError, ValueError):
        lo = hi = np.nan
    # Under 4 px a cell has no pixel 2 px inside its edge to hold a nucleus (and under
    # ~0.5 px no pixel at all), yet would count as live or dead.
    if not 4 <= lo <= hi < np.inf:
        raise ValueError(
            f"cell_radius must be (low, high) px with 4 <= low <= high < inf, got {cell_radius!r}")
    return lo, hi
