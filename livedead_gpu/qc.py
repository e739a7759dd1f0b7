"""QC pictures: the article's four-panel view of a frame, a GIF per well, an HTML report.

The four panels (the article's figure): the brightfield with the fluorescence laid
over it; Hoechst in blue and Draq7 in red; the Sobel gradient magnitude the cell
area is thresholded on; the class mask in the fixed `CLASS_COLORS`, with a legend.

`CLASS_COLORS` is the one definition of the class colours (RGB, uint8): every
picture here paints class ``i`` in exactly ``CLASS_COLORS[i]``, drawn without
interpolation, so a pixel of that RGB in a PNG is that class.

Intensities are scaled per channel (`channel_limits`): brightfield between its
0.5th and 99.5th percentiles; a fluorescence channel from its median (the
background) to its 99.9th percentile, but at least 20 noise s.d. above the median,
so a channel with no stain (Draq7 before any cell died) stays dark instead of
showing its noise at full brightness; a float image in [0, 1] looks as its integer
counts would. A GIF uses one set of limits for all its frames, so stains that fade
or appear over time do so on screen too.

Figures use matplotlib's object API (no pyplot, no display); GIFs are made with
Pillow, each frame's palette holding the class colours exactly (the rest of the
frame is quantised to the other 251 entries).
"""

from __future__ import annotations

import datetime
import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .io import atomic_write, frame_stem
from .stages.classes import CLASS_NAMES

__all__ = [
    "CLASS_COLORS",
    "CLASS_LABELS",
    "QC_FIGSIZE",
    "channel_limits",
    "colorize_classes",
    "composite",
    "fluorescence",
    "plot_frame",
    "plot_result",
    "qc_training_set",
    "select_frames",
    "well_gif",
    "write_report",
]

#: RGB (uint8) of each class, indexed by class value: background black, cell area
#: grey, outline yellow, Hoechst (live) nucleus blue, Draq7 (dead) nucleus red.
CLASS_COLORS = np.array([
    (0, 0, 0),
    (128, 128, 128),
    (255, 230, 0),
    (40, 110, 255),
    (235, 30, 30),
], dtype=np.uint8)
CLASS_COLORS.setflags(write=False)
#: Legend text of each class.
CLASS_LABELS = ("0 background", "1 cell area", "2 cell outline", "3 Hoechst nucleus (live)",
                "4 Draq7 nucleus (dead)")
#: Size of a four-panel figure in inches: ``dpi=100`` gives a 1000 x 1040 px PNG.
QC_FIGSIZE = (10.0, 10.4)
#: GIF tiles are scaled by an integer factor to about this many pixels a side.
GIF_TILE = 256

_HOECHST_RGB = CLASS_COLORS[3] / 255.0
_DRAQ7_RGB = CLASS_COLORS[4] / 255.0
_NOISE_SPAN = 20.0

assert len(CLASS_COLORS) == len(CLASS_NAMES) == len(CLASS_LABELS)


# ----------------------------------------------------------------------------- colour


def colorize_classes(classes) -> np.ndarray:
    """(M, N) class mask (0..4) -> (M, N, 3) uint8 RGB in `CLASS_COLORS`.

    Raises
    ------
    ValueError
        Not 2-D, not integer, or a value outside 0..4.
    """
    classes = np.asarray(classes)
    if classes.ndim != 2 or classes.dtype.kind not in "ui":
        raise ValueError(f"classes must be a 2-D integer mask, got {classes.dtype} of shape {classes.shape}")
    if classes.size and (classes.min() < 0 or classes.max() >= len(CLASS_COLORS)):
        raise ValueError(f"classes must hold values 0..{len(CLASS_COLORS) - 1}, "
                         f"got {classes.min()}..{classes.max()}")
    return CLASS_COLORS[classes]


def _sample(images) -> tuple[np.ndarray, bool]:
    """Up to ~1M pixels of one image or a sequence of them (every k-th), as float32, and
    whether any of them is a float image."""
    images = [np.asarray(images)] if np.ndim(images) == 2 else [np.asarray(i) for i in images]
    total = sum(i.size for i in images)
    step = max(1, int(math.sqrt(total / 1_000_000)))
    x = np.concatenate([i[::step, ::step].ravel() for i in images]).astype(np.float32)
    return x, any(i.dtype.kind in "fc" for i in images)


def channel_limits(images, kind: str = "fluorescence") -> tuple[float, float]:
    """Display range ``(lo, hi)`` of a channel (one image or a sequence of them).

    Parameters
    ----------
    images : (M, N) array or sequence of them
    kind : {"fluorescence", "brightfield", "gradient"}
        brightfield: 0.5th-99.5th percentiles; gradient: 0 to the 99.5th percentile;
        fluorescence: median to ``max(99.9th percentile, median + 20 sigma)``,
        ``sigma`` the noise s.d. from the median absolute deviation, at least one
        grey level for an integer image (its quantisation: an unstained channel of
        all one value stays dark) and 1e-4 of the larger of ``|median|`` and
        ``|99.9th percentile|`` for a float one, whose grey level is unknown (one of
        1 would paint a [0, 1] image black).
    """
    x, is_float = _sample(images)
    if kind == "brightfield":
        lo, hi = np.percentile(x, (0.5, 99.5))
    elif kind == "gradient":
        lo, hi = 0.0, np.percentile(x, 99.5)
    elif kind == "fluorescence":
        lo = float(np.median(x))
        floor = 1e-4 * max(abs(lo), abs(float(np.percentile(x, 99.9)))) if is_float else 1.0
        sigma = max(1.4826 * float(np.median(np.abs(x - lo))), floor)
        hi = max(float(np.percentile(x, 99.9)), lo + _NOISE_SPAN * sigma)
    else:
        raise ValueError(f"kind must be 'fluorescence', 'brightfield' or 'gradient', got {kind!r}")
    return float(lo), float(max(hi, lo + 1e-6))


def _scale(image, limits) -> np.ndarray:
    lo, hi = limits
    return np.clip((np.asarray(image, np.float32) - lo) / (hi - lo), 0, 1)


def _limits(brightfield, hoechst, draq7, limits):
    if limits is None:
        limits = {}
    return {
        "brightfield": limits.get("brightfield") or channel_limits(brightfield, "brightfield"),
        "hoechst": limits.get("hoechst") or channel_limits(hoechst),
        "draq7": limits.get("draq7") or channel_limits(draq7),
    }


def fluorescence(hoechst, draq7, limits: Mapping | None = None) -> np.ndarray:
    """Hoechst in blue and Draq7 in red on black: (M, N, 3) uint8."""
    lim = limits or {}
    h = _scale(hoechst, lim.get("hoechst") or channel_limits(hoechst))
    d = _scale(draq7, lim.get("draq7") or channel_limits(draq7))
    rgb = h[..., None] * _HOECHST_RGB + d[..., None] * _DRAQ7_RGB
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def composite(brightfield, hoechst, draq7, limits: Mapping | None = None) -> np.ndarray:
    """Brightfield in grey (dimmed to 70 %) with Hoechst blue and Draq7 red added: (M, N, 3) uint8."""
    lim = limits or {}
    bf = _scale(brightfield, lim.get("brightfield") or channel_limits(brightfield, "brightfield"))
    h = _scale(hoechst, lim.get("hoechst") or channel_limits(hoechst))
    d = _scale(draq7, lim.get("draq7") or channel_limits(draq7))
    rgb = 0.7 * bf[..., None] + 0.8 * (h[..., None] * _HOECHST_RGB + d[..., None] * _DRAQ7_RGB)
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- four panels


def _save(fig, path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png"))


def plot_frame(brightfield, hoechst, draq7, classes, path, *, gradient=None, smoothing: float = 1.0,
               title: str | None = None, n_live: int | None = None, n_dead: int | None = None,
               gradient_threshold: float | None = None, gradient_scale: float | None = None,
               limits: Mapping | None = None, dpi: int = 100) -> Path:
    """The article's four-panel view of one frame, as a PNG of `QC_FIGSIZE` at ``dpi``.

    Parameters
    ----------
    brightfield, hoechst, draq7 : (M, N) array
    classes : (M, N) uint8 array, values 0..4
    path : path-like
        Where the PNG goes (written atomically).
    gradient : (M, N) float array, optional
        The Sobel magnitude (``FrameResult.intermediates["gradient"]``); recomputed
        from the brightfield (Gaussian ``smoothing``, then Sobel) when omitted.
    title : str, optional
        Above the panels.
    n_live, n_dead : int, optional
        Shown over the class panel (counted from the mask's nuclei when omitted:
        connected components of class 3 and 4).
    gradient_threshold : float, optional
        The cell-area threshold (``FrameResult.thresholds["gradient"]``), marked on
        the gradient colour bar.
    gradient_scale : float, optional
        ``thresholds["gradient_scale"]``: given (``cell_threshold="block-max"``),
        ``gradient_threshold`` counts quantised levels, ``floor(gradient / scale)``,
        and the line is drawn on the gradient's own scale where the cell area
        starts, at ``(gradient_threshold + 1) * gradient_scale``. None: the
        threshold is on the gradient's scale ("noise"), drawn as given.
    limits : dict, optional
        ``{"brightfield" | "hoechst" | "draq7": (lo, hi)}`` display ranges (see
        `channel_limits`).

    Returns
    -------
    Path
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    classes = np.asarray(classes)
    mask_rgb = colorize_classes(classes)
    shapes = {np.shape(a) for a in (brightfield, hoechst, draq7, classes)}
    if len(shapes) != 1:
        raise ValueError(f"channels and classes must have one shape, got {sorted(shapes)}")
    if gradient is None:
        from .stages import smoothed_gradient

        gradient = smoothed_gradient(np.asarray(brightfield), smoothing)
    if n_live is None or n_dead is None:
        n_live, n_dead = _count_nuclei(classes)
    lim = _limits(brightfield, hoechst, draq7, limits)

    fig = Figure(figsize=QC_FIGSIZE, dpi=dpi, layout="constrained")
    axes = fig.subplots(2, 2)
    (a_comp, a_fluo), (a_grad, a_cls) = axes
    a_comp.imshow(composite(brightfield, hoechst, draq7, lim), interpolation="antialiased")
    a_comp.set_title("brightfield + Hoechst (blue) + Draq7 (red)")
    a_fluo.imshow(fluorescence(hoechst, draq7, lim), interpolation="antialiased")
    a_fluo.set_title("Hoechst (blue), Draq7 (red)")
    g_lo, g_hi = channel_limits(gradient, "gradient")
    line = label = None
    if gradient_threshold is not None and math.isfinite(gradient_threshold):
        if gradient_scale is None:
            line, label = gradient_threshold, f"cell-area threshold {gradient_threshold:.4g} (cyan)"
        elif math.isfinite(gradient_scale):
            # block-max: cell area where floor(gradient / scale) > threshold, i.e. where
            # gradient >= (threshold + 1) * scale; the line sits on that edge (threshold * scale
            # would be one quantisation level low: the pixels between are no cell area)
            line = (gradient_threshold + 1) * gradient_scale
            label = (f"cell area from {line:.4g} (cyan): floor(gradient / {gradient_scale:.4g}) "
                     f"> {gradient_threshold:.4g}")
    if line is not None:
        g_hi = max(g_hi, 1.5 * line)
    im = a_grad.imshow(gradient, cmap="magma", vmin=g_lo, vmax=g_hi, interpolation="antialiased")
    a_grad.set_title("Sobel gradient magnitude of brightfield")
    cbar = fig.colorbar(im, ax=a_grad, shrink=0.8, pad=0.02)
    if line is not None:
        cbar.ax.axhline(line, color="cyan", lw=2)
        cbar.set_label(label)
    a_cls.imshow(mask_rgb, interpolation="nearest")
    a_cls.set_title(f"classes: {n_live} live, {n_dead} dead nuclei")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(facecolor=c / 255.0, edgecolor="0.4", label=label)
               for c, label in zip(CLASS_COLORS, CLASS_LABELS)]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=10,
               title="class colours")
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def plot_result(brightfield, hoechst, draq7, result, path, *, title: str | None = None,
                limits: Mapping | None = None, dpi: int = 100) -> Path:
    """`plot_frame` for a `FrameResult` (its gradient when it kept intermediates)."""
    return plot_frame(
        brightfield, hoechst, draq7, result.classes, path,
        gradient=result.intermediates.get("gradient"), smoothing=result.params.smoothing,
        title=title, n_live=result.n_live, n_dead=result.n_dead,
        gradient_threshold=result.thresholds.get("gradient"),
        gradient_scale=result.thresholds.get("gradient_scale"), limits=limits, dpi=dpi)


def _count_nuclei(classes) -> tuple[int, int]:
    import cv2

    counts = []
    for value in (3, 4):
        n, _ = cv2.connectedComponents((classes == value).astype(np.uint8), connectivity=8)
        counts.append(n - 1)
    return counts[0], counts[1]


# ----------------------------------------------------------------------------- GIF


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """Scale by an integer factor (pixel repetition or striding) to about ``side`` px."""
    m = max(rgb.shape[:2])
    if m < side:
        k = max(1, side // m)
        return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    k = max(1, round(m / side))
    return rgb[::k, ::k]


def _gif_frame(rgb: np.ndarray, classes: np.ndarray, box: tuple[int, int]):
    """A palette ("P") image of ``rgb`` whose ``classes`` tile, at ``box`` (top, left), is
    painted with palette entries reserved for `CLASS_COLORS`, so its colours are exact.

    The rest of the frame is quantised to the other ``256 - len(CLASS_COLORS)``
    colours (median cut, as Pillow's own RGB-to-GIF conversion, without the
    class tile, which would otherwise take palette entries from the pictures).
    """
    from PIL import Image

    n = len(CLASS_COLORS)
    free = 256 - n
    top, left = box
    h, w = classes.shape
    rest = rgb.copy()
    rest[top:top + h, left:left + w] = 255   # the gaps' white: no palette entry of its own
    quantised = Image.fromarray(rest).quantize(colors=free)
    index = np.array(quantised, dtype=np.uint8)
    index[top:top + h, left:left + w] = free + classes.astype(np.uint8)
    palette = list(quantised.getpalette() or [])[:3 * free]
    palette += [0] * (3 * free - len(palette)) + [int(v) for v in CLASS_COLORS.ravel()]
    img = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    img.putpalette(palette)
    return img


def well_gif(frames: Iterable, path, *, title: str = "", duration_ms: int = 500,
             tile: int = GIF_TILE) -> Path:
    """An animated GIF of one field over time: composite | Hoechst + Draq7 | classes.

    The class tile is painted in exactly `CLASS_COLORS` (palette entries reserved
    for them); the composite and fluorescence tiles are quantised to the rest.

    Parameters
    ----------
    frames : iterable of (time, brightfield, hoechst, draq7, classes[, n_live, n_dead])
        In time order; one field of view (the display ranges are shared by all), so
        every frame's channels and mask have one shape. Without the counts, nuclei
        are counted in the mask (connected components of classes 3 and 4, so
        touching nuclei count once).
    path : path-like
        Where the GIF goes (written atomically); it loops forever.
    title : str
        Written in each frame's header with the time and the live/dead counts.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        No frame, or a frame (named by its index) whose channels or mask differ in
        shape from each other or from the first frame's.
    """
    from PIL import Image, ImageDraw

    frames = list(frames)
    if not frames:
        raise ValueError("well_gif needs at least one frame")
    shape = None
    for k, f in enumerate(frames):
        shapes = [np.shape(a) for a in f[1:5]]
        if len(set(shapes)) != 1 or len(shapes[0]) != 2:
            raise ValueError(f"well_gif frame {k} (time {f[0]}): brightfield, hoechst, draq7 and classes must be "
                             f"2-D of one shape, got {', '.join(map(str, shapes))}")
        if shape is None:
            shape = shapes[0]
        elif shapes[0] != shape:
            raise ValueError(f"well_gif frame {k} (time {f[0]}) has shape {shapes[0]}, frame 0 {shape}: "
                             "a GIF shows one field of view")
    lim = {
        "brightfield": channel_limits([f[1] for f in frames], "brightfield"),
        "hoechst": channel_limits([f[2] for f in frames]),
        "draq7": channel_limits([f[3] for f in frames]),
    }
    images = []
    for time, bf, ho, d7, classes, *counts in frames:
        classes = np.asarray(classes)
        colorize_classes(classes)   # its checks: 2-D integer, 0..4
        tiles = [composite(bf, ho, d7, lim), fluorescence(ho, d7, lim)]
        tiles = [_fit(t, tile) for t in tiles]
        cls = _fit(classes, tile)
        gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        body = np.concatenate([tiles[0], gap, tiles[1], gap, np.zeros(cls.shape + (3,), np.uint8)], axis=1)
        header = np.full((20, body.shape[1], 3), 255, np.uint8)
        img = Image.fromarray(np.concatenate([header, body], axis=0))
        n_live, n_dead = counts[:2] if len(counts) >= 2 else _count_nuclei(classes)
        ImageDraw.Draw(img).text((4, 4), f"{title}  t={time}   live {n_live}  dead {n_dead}".strip(),
                                 fill=(0, 0, 0))
        images.append(_gif_frame(np.asarray(img), cls, (header.shape[0], body.shape[1] - cls.shape[1])))
    return atomic_write(path, lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0))


# ----------------------------------------------------------------------------- report


def _rel(target: Path, start: Path) -> str:
    """The relative URL of ``target`` from folder ``start`` (``%``, ``#``, ``?``, spaces quoted)."""
    return quote(Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix())


def _fmt(x) -> str:
    if isinstance(x, float):
        return "–" if math.isnan(x) else f"{x:.3f}"
    return html.escape(str(x))


def write_report(path, *, title: str, manifest=None, readout: Mapping | None = None,
                 panels: Sequence[tuple[str, Path]] = (), gifs: Sequence[tuple[str, Path]] = (),
                 well_rows: Sequence[Mapping] = (), facts: Mapping | None = None) -> Path:
    """A one-page HTML report linking the kill curves, QC panels, GIFs and the manifest.

    Parameters
    ----------
    path : path-like
        The HTML file; links are relative to its folder, so the folder can be moved
        with the files.
    title : str
    manifest : path-like, optional
    readout : dict, optional
        `readout.write_readout`'s paths (``frames``, ``wells``, ``kill_curves``, ``plate_map``).
    panels, gifs : sequence of (caption, path)
    well_rows : sequence of dict
        `readout.well_readout` rows: the last time point of each well is tabulated.
    facts : dict, optional
        Extra ``name: value`` lines at the top (frames, parameters hash, ...).

    Returns
    -------
    Path
    """
    path = Path(path)
    base = path.parent
    e = html.escape
    facts = {"generated": datetime.datetime.now().isoformat(timespec="seconds"), **(facts or {})}
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1400px;color:#222}"
        "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
        "th{background:#f3f3f3}figure{display:inline-block;margin:.4em;vertical-align:top}"
        "figcaption{font-size:.9em;color:#555}.sw{display:inline-block;width:1em;height:1em;"
        "border:1px solid #666;vertical-align:middle;margin:0 .3em 0 1em}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<ul>" + "".join(f"<li><b>{e(str(k))}</b>: {e(str(v))}</li>" for k, v in facts.items()) + "</ul>",
    ]
    links = []
    if manifest is not None:
        links.append(f'<a href="{e(_rel(manifest, base))}">manifest.csv</a>')
    for key, label in (("frames", "per-frame readout (frames.csv)"), ("wells", "per-well readout (wells.csv)")):
        if readout and readout.get(key):
            links.append(f'<a href="{e(_rel(readout[key], base))}">{label}</a>')
    if links:
        out.append("<p>" + " · ".join(links) + "</p>")
    out.append("<p>Class colours:" + "".join(
        f'<span class="sw" style="background:rgb{tuple(int(v) for v in c)}"></span>{e(label)}'
        for c, label in zip(CLASS_COLORS, CLASS_LABELS)) + "</p>")
    if readout and (readout.get("kill_curves") or readout.get("plate_map")):
        out.append("<h2>Kill curves</h2>")
        for key in ("kill_curves", "plate_map"):
            if readout.get(key):
                src = e(_rel(readout[key], base))
                out.append(f'<figure><a href="{src}"><img src="{src}" style="max-width:680px" '
                           f'alt="{key}"></a></figure>')
    if well_rows:
        last = {}
        for r in well_rows:
            if r["well"] not in last or float(r["time"]) >= float(last[r["well"]]["time"]):
                last[r["well"]] = r
        out.append("<h2>Wells at their last time point</h2><table><tr><th>well</th><th>time</th>"
                   "<th>live</th><th>dead</th><th>dead fraction</th><th>cell-area fraction</th>"
                   "<th>sites</th><th>sites missing</th></tr>")
        for r in last.values():
            out.append("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in (
                "well", "time", "n_live", "n_dead", "dead_fraction", "cell_fraction", "n_sites", "sites_missing"))
                + "</tr>")
        out.append("</table>")
    if panels:
        out.append("<h2>QC panels</h2>")
        for caption, p in panels:
            src = e(_rel(p, base))
            out.append(f'<figure><a href="{src}"><img src="{src}" width="440" alt="{e(caption)}"></a>'
                       f"<figcaption>{e(caption)}</figcaption></figure>")
    if gifs:
        out.append("<h2>Wells over time</h2><p>composite | Hoechst (blue) + Draq7 (red) | classes</p>")
        for caption, p in gifs:
            src = e(_rel(p, base))
            out.append(f'<figure><img src="{src}" alt="{e(caption)}"><figcaption>{e(caption)}'
                       "</figcaption></figure>")
    out.append("</body></html>\n")
    from .io import atomic_write_text

    return atomic_write_text(path, "\n".join(out))


# ----------------------------------------------------------------------------- training sets


def select_frames(rows: Sequence[Mapping], n: int) -> list[Mapping]:
    """Up to ``n`` manifest rows to show: round-robin over the wells (plate order), each
    well's first site at its last time point first, then its first, then the rest."""
    from .readout import _well_order

    if n < 0:
        raise ValueError(f"frames must be >= 0, got {n}")
    per_well = {}
    for r in sorted(rows, key=lambda r: (_well_order(r["well"]), r["site"], r["time"])):
        per_well.setdefault(r["well"], []).append(r)
    queues = []
    for well_rows in per_well.values():
        site = min(r["site"] for r in well_rows)
        first_site = [r for r in well_rows if r["site"] == site]
        others = [r for r in well_rows if r["site"] != site]
        order = [first_site[-1]] + ([first_site[0]] if len(first_site) > 1 else []) + first_site[1:-1] + others
        queues.append(order)
    chosen = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop(0))
    return chosen


def _read_frame(root: Path, row: Mapping):
    """(brightfield, hoechst, draq7, classes) of a manifest row."""
    import tifffile

    where = f"manifest row {row['well']} site {row['site']} time {row['time']}"
    arrays = []
    for column in ("image", "classes"):
        rel = row.get(column) or ""
        if not rel:
            raise ValueError(f"{where}: no {column} path")
        p = root / rel
        if not p.is_file():
            raise FileNotFoundError(f"{where}: {column} file not found: {p}")
        try:
            arrays.append(tifffile.imread(p))
        except Exception as e:  # a damaged TIFF makes tifffile raise anything from TiffFileError to IndexError
            raise ValueError(f"{where}: {column} file {str(p)!r} is not a readable TIFF "
                             f"({type(e).__name__}: {e})") from None
    image, classes = arrays
    if image.ndim == 3 and image.shape[0] != 3 and image.shape[-1] == 3:
        image = np.moveaxis(image, -1, 0)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"{where}: image must be a (3, Y, X) brightfield/hoechst/draq7 stack, "
                         f"got shape {image.shape}")
    if classes.shape != image.shape[1:]:
        raise ValueError(f"{where}: classes shape {classes.shape} differs from the image's {image.shape[1:]}")
    return image[0], image[1], image[2], classes


def _frame_name(row) -> str:
    """The frame's files' stem (`io.frame_stem`) where its site and time are whole numbers >= 0
    (a manifest may give others, e.g. hours)."""
    try:
        site, time = (float(row[k]) for k in ("site", "time"))
    except (TypeError, ValueError):
        site = time = -1.0
    if site.is_integer() and time.is_integer() and site >= 0 and time >= 0:
        return frame_stem(row["well"], int(site), int(time))
    return f"{row['well']}_s{row['site']}_t{row['time']}"


def _file_stem(text, used: set) -> str:
    """``text`` (a manifest's well name, ...) as a file stem inside one folder: path
    separators and NUL become ``_``, as do leading dots (no ``..``, no hidden file), so
    a well named ``../x`` or ``B/1`` writes no file outside the folder; a stem already
    in ``used`` (``B/1`` beside ``B_1``) gets ``-2``, ``-3``, ... and ``used`` takes it."""
    stem = str(text)
    for sep in ("/", "\\", "\0"):   # POSIX and Windows separators, and NUL
        stem = stem.replace(sep, "_")
    bare = stem.lstrip(".")
    stem = "_" * (len(stem) - len(bare)) + bare or "_"
    unique, n = stem, 2
    while unique in used:
        unique, n = f"{stem}-{n}", n + 1
    used.add(unique)
    return unique


def _float(text):
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def qc_training_set(root, out=None, n_frames: int = 8, gifs: bool = True, log=None) -> dict:
    """QC pictures, the readout and an HTML report of a training set.

    Parameters
    ----------
    root : path-like
        A training-set folder with ``manifest.csv`` (columns ``image``, ``classes``
        and those of `readout.MANIFEST_REQUIRED`) and, optionally, ``params.toml``
        (its ``smoothing`` is used for the gradient, else the default; with
        ``cell_threshold="block-max"`` the gradient threshold, in quantised levels,
        is marked at ``(thr_gradient + 1) * scale``, the scale recomputed from the
        gradient and ``gradient_levels`` as `segment_frame` computes it).
    out : path-like, optional
        Base folder of the outputs, ``root`` by default: ``qc/panels/*.png``,
        ``qc/gifs/*.gif`` (named after well, site and time, path separators and
        leading dots replaced by ``_``), ``readout/`` (see `readout.write_readout`)
        and ``report.html``.
    n_frames : int
        How many four-panel pictures (see `select_frames`).
    gifs : bool
        One GIF per well (its first site over time).
    log : callable, optional
        Called with a line of progress text.

    Returns
    -------
    dict
        ``report`` (Path), ``panels`` and ``gifs`` (lists of Paths), ``readout``
        (dict of Paths).
    """
    from . import readout
    from .params import SegmentParams

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training-set folder not found: {root}")
    out = Path(out) if out is not None else root
    rows = readout.read_manifest(root)
    missing = [c for c in ("image", "classes") if c not in rows[0]]
    if missing:
        raise ValueError(f"{root / 'manifest.csv'}: missing column(s) {', '.join(missing)} (needed by qc)")
    params = SegmentParams.from_toml(root / "params.toml") if (root / "params.toml").is_file() else SegmentParams()
    say = log or (lambda _line: None)

    from .checks import inside_padding
    from .stages.gradient import gradient_scale, padded_gradient

    panels, used = [], set()
    for row in select_frames(rows, n_frames):
        bf, ho, d7, classes = _read_frame(root, row)
        caption = f"{row['well']} site {row['site']} t={row['time']}"
        # the gradient as segment_frame makes it (registration padding as well)
        gradient, _ = padded_gradient(np.asarray(bf), params.smoothing)
        scale = None
        if params.cell_threshold == "block-max":
            # thr_gradient counts levels of gradient / scale; the manifest records no scale, but
            # it is a function of the gradient and params.toml, as segment_frame computes it:
            # inside the registration margins it sets aside
            inside, _ = inside_padding({"brightfield": np.asarray(bf), "hoechst": np.asarray(ho),
                                        "draq7": np.asarray(d7)}, params.coarseness)
            scale = gradient_scale(padded_gradient(inside["brightfield"], params.smoothing)[0], params.coarseness,
                                   params.gradient_levels)
        stem = _file_stem(_frame_name(row), used)
        p = plot_frame(bf, ho, d7, classes, out / "qc" / "panels" / f"{stem}.png", gradient=gradient,
                       smoothing=params.smoothing, title=caption, n_live=row["n_live"], n_dead=row["n_dead"],
                       gradient_threshold=_float(row.get("thr_gradient")), gradient_scale=scale)
        panels.append((caption, p))
        say(f"panel: {p}")

    gif_paths, used = [], set()
    if gifs:
        by_well = {}
        for r in rows:
            by_well.setdefault(r["well"], []).append(r)
        for well in sorted(by_well, key=readout._well_order):
            site = min(r["site"] for r in by_well[well])
            series = sorted((r for r in by_well[well] if r["site"] == site), key=lambda r: r["time"])
            frames = ((r["time"], *_read_frame(root, r), r["n_live"], r["n_dead"]) for r in series)
            p = well_gif(frames, out / "qc" / "gifs" / f"{_file_stem(f'{well}_s{int(site):02d}', used)}.gif",
                         title=f"{well} site {site}")
            gif_paths.append((f"{well} site {site}, {len(series)} time points", p))
            say(f"gif: {p}")

    frame_rows = readout.manifest_readout(rows, root)
    paths = readout.write_readout(frame_rows, out / "readout", title=f"Kill curves: {root.resolve().name}")
    well_rows = readout.well_readout(frame_rows)
    say(f"readout: {paths['wells']}")

    hashes = sorted({r.get("params_hash", "") for r in rows} - {""})
    facts = {
        "training set": str(root.resolve()),
        "frames": len(rows),
        "wells": len({r["well"] for r in rows}),
        "sites": len({(r["well"], r["site"]) for r in rows}),
        "time points": len({r["time"] for r in rows}),
        "live / dead nuclei (all frames)": f"{sum(r['n_live'] for r in rows)} / {sum(r['n_dead'] for r in rows)}",
    }
    if hashes:
        facts["parameters hash"] = ", ".join(hashes)
    report = write_report(out / "report.html", title=f"livedead-gpu QC: {root.resolve().name}",
                          manifest=root / "manifest.csv", readout=paths, panels=panels, gifs=gif_paths,
                          well_rows=well_rows, facts=facts)
    say(f"report: {report}")
    return {"report": report, "panels": [p for _, p in panels], "gifs": [p for _, p in gif_paths],
            "readout": paths}
