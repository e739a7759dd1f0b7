"""The live/dead readout: counts per frame, per well over time, kill curves.

Per frame: live nuclei (Hoechst without Draq7), dead nuclei (Draq7), the dead
fraction ``n_dead / (n_live + n_dead)`` (NaN when a frame holds no nucleus) and the
cell-area fraction (the share of pixels in any class but background: cell area,
outline and both nucleus classes).

Per well and time point the sites are summed: counts add up, the dead fraction is
recomputed from the summed counts (not averaged), the cell-area fraction is the
mean over the sites (sites of a plate have one size).

The readout comes from a `FrameResult` (`frame_readout`) or from a training set's
``manifest.csv`` (`read_manifest`, `manifest_readout`); `write_readout` writes
``frames.csv``, ``wells.csv``, ``kill_curves.png`` and ``plate_map.png``.

Plots use matplotlib's object API (`matplotlib.figure.Figure`, rendered by Agg):
no pyplot, no display, no global backend switch.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .io import atomic_write, atomic_write_text

__all__ = [
    "FRAME_COLUMNS",
    "MANIFEST_REQUIRED",
    "WELL_COLUMNS",
    "dead_fraction",
    "frame_readout",
    "manifest_readout",
    "parse_well",
    "plot_kill_curves",
    "plot_plate_map",
    "read_manifest",
    "readout_training_set",
    "well_readout",
    "write_csv",
    "write_readout",
]

#: Columns of ``frames.csv``: one row per (well, site, time).
FRAME_COLUMNS = ("well", "site", "time", "n_live", "n_dead", "dead_fraction", "cell_fraction")
#: Columns of ``wells.csv``: one row per (well, time), sites summed.
WELL_COLUMNS = ("well", "time", "n_live", "n_dead", "dead_fraction", "cell_fraction", "n_sites", "sites_missing")
#: Columns a manifest must have for the readout.
MANIFEST_REQUIRED = ("well", "site", "time", "n_live", "n_dead")
#: Class-fraction columns whose sum is the cell-area fraction, when ``frac_background`` is absent.
_FOREGROUND_FRACTIONS = ("frac_cell", "frac_outline", "frac_hoechst", "frac_draq7")
_WELL = re.compile(r"^([A-Za-z]{1,2})0*(\d{1,3})$")
_MAX_LEGEND = 24
_MAX_ROWS, _MAX_COLUMNS = 32, 48   # a 1536-well plate: the largest a plate map lays out


def dead_fraction(n_live: int, n_dead: int) -> float:
    """``n_dead / (n_live + n_dead)``; NaN when there is no nucleus at all."""
    n = n_live + n_dead
    return n_dead / n if n else math.nan


def frame_readout(result, well: str = "", site: int = 0, time=0) -> dict:
    """The readout of one segmented frame.

    Parameters
    ----------
    result : FrameResult
        From `livedead_gpu.segment_frame`.
    well, site, time
        Copied into the row.

    Returns
    -------
    dict
        The `FRAME_COLUMNS`: ``well``, ``site``, ``time``, ``n_live``, ``n_dead``,
        ``dead_fraction`` (NaN without nuclei), ``cell_fraction`` (share of pixels
        with a class other than background).
    """
    classes = getattr(result, "classes", None)
    if classes is None:
        raise TypeError(f"result must be a FrameResult, got {type(result).__name__}")
    n_live, n_dead = int(result.n_live), int(result.n_dead)
    return {
        "well": well, "site": site, "time": time, "n_live": n_live, "n_dead": n_dead,
        "dead_fraction": dead_fraction(n_live, n_dead),
        "cell_fraction": float(np.count_nonzero(classes)) / classes.size,
    }


# ----------------------------------------------------------------------------- manifest


def _number(text: str, name: str, where: str, integer: bool, minimum=None, maximum=None):
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or (integer and value != int(value)) or (
            minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        kind = "an integer" if integer else "a number"
        bound = f" >= {minimum}" if minimum is not None else ""
        bound += f"{' and' if bound else ''} <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{where}: {name} must be {kind}{bound}, got {text!r}")
    if integer or value == int(value):
        return int(value)
    return value


def read_manifest(path) -> list[dict]:
    """Read and check a training set's ``manifest.csv``.

    Parameters
    ----------
    path : path-like
        The manifest, or the training-set folder that holds ``manifest.csv``.

    Returns
    -------
    list of dict
        One per row, every column kept as text except ``site`` (int), ``time``
        (int, or float when not integral), ``n_live`` and ``n_dead`` (int), sorted
        by (well, site, time).

    Raises
    ------
    FileNotFoundError
        No such folder or file.
    ValueError
        Not a CSV, a required column (`MANIFEST_REQUIRED`) missing, no rows, a value
        that is not a number, or a (well, site, time) given twice; the message names
        the file, the line and the column.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "manifest.csv").is_file():
            raise FileNotFoundError(f"no manifest.csv in {path}")
        path = path / "manifest.csv"
    elif not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a CSV text file") from None
    try:
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        missing = [c for c in MANIFEST_REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}"
                             + (f" (header: {','.join(header)[:80]})" if header else " (empty file)"))
        rows, seen = [], {}
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{where}: expected {len(header)} fields, got a different number")
            well = row["well"].strip()
            if not well:
                raise ValueError(f"{where}: well is empty")
            row = dict(row, well=well)
            row["site"] = _number(row["site"], "site", where, True, 0)
            row["time"] = _number(row["time"], "time", where, False)
            row["n_live"] = _number(row["n_live"], "n_live", where, True, 0)
            row["n_dead"] = _number(row["n_dead"], "n_dead", where, True, 0)
            key = (well, row["site"], row["time"])
            if key in seen:
                raise ValueError(f"{where}: well {well} site {key[1]} time {key[2]} "
                                 f"already given on line {seen[key]}")
            seen[key] = reader.line_num
            rows.append(row)
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV ({e})") from None
    if not rows:
        raise ValueError(f"{path}: no frames (header only)")
    return sorted(rows, key=lambda r: (r["well"], r["site"], r["time"]))


def _cell_fraction(row: Mapping, root: Path | None) -> float:
    """1 - frac_background, else the sum of the foreground fractions, else from the mask."""
    where = f"manifest row {row['well']} site {row['site']} time {row['time']}"
    if row.get("frac_background", "") not in ("", None):
        return 1.0 - float(_number(row["frac_background"], "frac_background", where, False, 0, 1))
    if all(row.get(c, "") not in ("", None) for c in _FOREGROUND_FRACTIONS):
        return float(sum(_number(row[c], c, where, False, 0, 1) for c in _FOREGROUND_FRACTIONS))
    if row.get("classes") and root is not None:
        import tifffile

        path = root / row["classes"]
        try:
            classes = tifffile.imread(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{where}: classes file not found: {str(path)!r}") from None
        except Exception as e:  # a damaged file: tifffile raises all kinds
            raise ValueError(f"{where}: cannot read classes file {str(path)!r}: {e}") from None
        return float(np.count_nonzero(classes)) / classes.size
    return math.nan


def manifest_readout(manifest, root=None) -> list[dict]:
    """Per-frame readout rows from a manifest.

    Parameters
    ----------
    manifest : path-like or list of dict
        A ``manifest.csv`` (or its folder), or rows from `read_manifest`.
    root : path-like, optional
        The training-set folder (paths in the manifest are relative to it); by
        default the manifest's folder. Needed only when the manifest has no class
        fractions and the cell fraction is read from the class masks.

    Returns
    -------
    list of dict
        `FRAME_COLUMNS` rows, sorted by (well, site, time). Counts are the
        manifest's; the dead fraction is recomputed from them.
    """
    if isinstance(manifest, (str, Path)):
        path = Path(manifest)
        rows = read_manifest(path)
        root = Path(root) if root is not None else (path if path.is_dir() else path.parent)
    else:
        rows = list(manifest)
        root = Path(root) if root is not None else None
    return [{
        "well": r["well"], "site": r["site"], "time": r["time"],
        "n_live": r["n_live"], "n_dead": r["n_dead"],
        "dead_fraction": dead_fraction(r["n_live"], r["n_dead"]),
        "cell_fraction": _cell_fraction(r, root),
    } for r in rows]


def well_readout(frame_rows: Iterable[Mapping]) -> list[dict]:
    """Sum the sites of each (well, time).

    ``sites_missing`` counts the sites the well has at other time points but not at
    this one (a frame left out by ``on_error="skip"``): its sums pool other fields
    than its neighbours', and the plots leave it out (a gap) rather than bend the
    curve (a well's dead fraction had fallen 0.12 -> 0.08 -> 0.32 where one of two
    sites was missing). A time point of the plate between a well's first and last
    at which none of its sites is left gets a row too: no site, counts 0, fractions
    ``nan`` (its curve had joined across the gap).

    Returns
    -------
    list of dict
        `WELL_COLUMNS` rows sorted by plate position (row letter, column number;
        other well names after, by name), then time.
    """
    frame_rows = list(frame_rows)   # read twice
    groups = defaultdict(list)
    for r in frame_rows:
        groups[(r["well"], r["time"])].append(r)
    sites = defaultdict(set)
    for r in frame_rows:
        sites[r["well"]].add(str(r.get("site", "")))
    out = []
    for (well, time), rows in groups.items():
        n_live = sum(int(r["n_live"]) for r in rows)
        n_dead = sum(int(r["n_dead"]) for r in rows)
        fractions = [float(r["cell_fraction"]) for r in rows if not math.isnan(float(r["cell_fraction"]))]
        out.append({
            "well": well, "time": time, "n_live": n_live, "n_dead": n_dead,
            "dead_fraction": dead_fraction(n_live, n_dead),
            "cell_fraction": sum(fractions) / len(fractions) if fractions else math.nan,
            "n_sites": len(rows),
            "sites_missing": len(sites[well] - {str(r.get("site", "")) for r in rows}),
        })
    times = sorted({t for _, t in groups})
    for well in sites:
        own = [t for w, t in groups if w == well]
        for time in times:
            if min(own) < time < max(own) and (well, time) not in groups:
                out.append({"well": well, "time": time, "n_live": 0, "n_dead": 0, "dead_fraction": math.nan,
                            "cell_fraction": math.nan, "n_sites": 0, "sites_missing": len(sites[well])})
    return sorted(out, key=lambda r: (_well_order(r["well"]), r["time"]))


def _format(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def write_csv(rows: Iterable[Mapping], path, columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) with ``columns`` as a CSV, atomically; floats to 6 digits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: _format(v) for k, v in r.items()} for r in rows)
    return atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- plots


def parse_well(name: str) -> tuple[int, int] | None:
    """``"B03"`` -> ``(1, 3)``: 0-based row index (A = 0, ..., Z = 25, AA = 26) and column number.

    None for a name that is not a plate position: one outside a 1536-well plate (rows
    A-AF, columns 1-48), such as ``"WT1"`` or ``"A0"``.
    """
    m = _WELL.match(name.strip())
    if not m:
        return None
    letters, column = m.group(1).upper(), int(m.group(2))
    row = ord(letters[-1]) - 65 + (26 * (ord(letters[0]) - 64) if len(letters) == 2 else 0)
    if row >= _MAX_ROWS or not 1 <= column <= _MAX_COLUMNS:
        return None
    return row, column


def _row_letters(row: int) -> str:
    return chr(65 + row) if row < 26 else chr(64 + row // 26) + chr(65 + row % 26)


def _well_order(well: str):
    # The name last: "A1" and "A01" (one position, two spellings) stay apart, not interleaved.
    pos = parse_well(well)
    return (0, pos[0], pos[1], well) if pos else (1, 0, 0, well)


def _series(well_rows: Iterable[Mapping]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """well -> (times, dead fractions), wells in plate order."""
    by_well = defaultdict(list)
    for r in well_rows:
        partial = int(r.get("sites_missing") or 0) > 0   # other fields than the well's other times
        by_well[r["well"]].append((float(r["time"]), math.nan if partial else float(r["dead_fraction"])))
    out = {}
    for well in sorted(by_well, key=_well_order):
        t, f = np.array(sorted(by_well[well])).T
        out[well] = (t, f)
    return out


def _integral(series) -> bool:
    return all(np.all(t == np.round(t)) for t, _ in series.values())


def _live_dead_cmap():
    """Hoechst blue (all alive) through purple to Draq7 red (all dead): the class colours."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "livedead", [(40 / 255, 110 / 255, 1.0), (150 / 255, 60 / 255, 190 / 255), (235 / 255, 30 / 255, 30 / 255)])


def _colours(n: int):
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def _save(fig, path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png"))


def plot_kill_curves(well_rows: Iterable[Mapping], path, title: str | None = None,
                     time_label: str = "time point", dpi: int = 100) -> Path:
    """Dead fraction against time, one line per well, as a PNG (8 x 5 in at ``dpi``).

    Parameters
    ----------
    well_rows : iterable of dict
        `well_readout` rows (``well``, ``time``, ``dead_fraction``).
    path : path-like
        Where the PNG goes (written atomically).
    title : str, optional
    time_label : str
        The x-axis label.

    Returns
    -------
    Path
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    series = _series(well_rows)
    if not series:
        raise ValueError("no readout rows to plot")
    fig = Figure(figsize=(8, 5), dpi=dpi, layout="constrained")
    ax = fig.add_subplot()
    for (well, (t, f)), colour in zip(series.items(), _colours(len(series))):
        ax.plot(t, f, marker="o", markersize=3.5, lw=1.6, color=colour, label=well)
    ax.set_xlabel(time_label)
    ax.set_ylabel("dead fraction  (Draq7+ / all nuclei)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if _integral(series):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or f"Kill curves: {len(series)} well{'s' * (len(series) != 1)}")
    if len(series) <= _MAX_LEGEND:
        ax.legend(title="well", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                  ncol=1 if len(series) <= 12 else 2)
    return _save(fig, path)


def plot_plate_map(well_rows: Iterable[Mapping], path, title: str | None = None,
                   time_label: str = "time point", dpi: int = 100) -> Path:
    """Kill curves as small multiples laid out like the plate, as a PNG.

    One panel per well at its row letter and column number (rows A.. down, columns
    1.. across, from A1 to the last row and column used). When any well's name is
    not a plate position, all wells are laid out in a near-square grid instead, in
    plate order (row and column names left off). Each panel
    shows the well's dead fraction over time, shaded and coloured by its final value
    (a shared 0-1 scale, see the colour bar). Panels without data stay blank.

    Returns
    -------
    Path
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    series = _series(well_rows)
    if not series:
        raise ValueError("no readout rows to plot")
    positions = {w: parse_well(w) for w in series}
    spellings = defaultdict(list)
    for w, pos in positions.items():
        spellings[pos].append(w)
    twice = [names for pos, names in spellings.items() if pos and len(names) > 1]
    if twice:   # two wells at one place: their panels would be drawn over each other
        warnings.warn(f"wells {' and '.join(twice[0])} name one plate position: the plate map lays all wells "
                      "out in a grid instead (make the names one spelling, e.g. A1 or A01, to map them)",
                      UserWarning, stacklevel=2)
        positions = {w: None for w in positions}
    if all(positions.values()):
        n_rows = max(p[0] for p in positions.values()) + 1
        n_cols = max(p[1] for p in positions.values())
        cell = {w: (p[0], p[1] - 1) for w, p in positions.items()}
        row_names = [_row_letters(i) for i in range(n_rows)]
        col_names = [str(j + 1) for j in range(n_cols)]
    else:
        n_cols = math.ceil(math.sqrt(len(series)))
        n_rows = math.ceil(len(series) / n_cols)
        cell = {w: divmod(i, n_cols) for i, w in enumerate(series)}
        row_names = col_names = None
    side = min(1.3, max(0.45, 16 / max(n_cols, 1)))
    # At least as wide as the title (~0.075 in a character at 11 pt): one or two columns had cut it.
    heading = title or f"Plate map: dead fraction (0-1) vs {time_label} (00-00), per well"
    fig = Figure(figsize=(max(n_cols * side + 1.6, 0.075 * len(heading) + 0.4), n_rows * side + 1.0), dpi=dpi,
                 layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, sharex=True, sharey=True, squeeze=False))
    cmap, norm = _live_dead_cmap(), Normalize(0, 1)
    t_all = np.concatenate([t for t, _ in series.values()])
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_color("0.8")
    for well, (t, f) in series.items():
        i, j = cell[well]
        ax = axes[i, j]
        finite = f[np.isfinite(f)]
        colour = cmap(norm(finite[-1])) if finite.size else "0.5"
        ax.axhline(0.5, color="0.85", lw=0.6, zorder=0)
        # Shaded where there are data only: a frame without nuclei is a gap, not 0 % dead.
        ax.fill_between(t, 0, np.nan_to_num(f), where=np.isfinite(f), color=colour, alpha=0.3, lw=0)
        ax.plot(t, f, color=colour, lw=1.4)
        # A point with no neighbour (an endpoint plate's one time point) draws no line.
        alone = np.isfinite(f) & ~np.isfinite(np.r_[np.nan, f[:-1]]) & ~np.isfinite(np.r_[f[1:], np.nan])
        ax.plot(t[alone], f[alone], "o", color=colour, ms=4)
        ax.text(0.04, 0.95, well, transform=ax.transAxes, va="top", fontsize=7, color="0.2")
    axes[0, 0].set_xlim(t_all.min(), max(t_all.max(), t_all.min() + 1))
    axes[0, 0].set_ylim(0, 1.05)
    if row_names:
        for i, name in enumerate(row_names):
            axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9, fontweight="bold")
        for j, name in enumerate(col_names):
            axes[0, j].set_title(name, fontsize=9, fontweight="bold")
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes, shrink=0.6, label="final dead fraction")
    t_range = f"{t_all.min():g}-{t_all.max():g}"
    fig.suptitle(title or f"Plate map: dead fraction (0-1) vs {time_label} ({t_range}), per well", fontsize=11)
    return _save(fig, path)


# ----------------------------------------------------------------------------- one call


def write_readout(frame_rows: Sequence[Mapping], out, title: str | None = None) -> dict[str, Path]:
    """Write ``frames.csv``, ``wells.csv``, ``kill_curves.png`` and ``plate_map.png`` into ``out``.

    Returns
    -------
    dict
        ``frames``, ``wells``, ``kill_curves``, ``plate_map``: the paths written.
    """
    out = Path(out)
    frame_rows = list(frame_rows)  # read twice below: an iterator would leave frames.csv empty
    if not frame_rows:
        raise ValueError("no readout rows to write")  # before any file: the plots would refuse them
    wells = well_readout(frame_rows)
    return {
        "frames": write_csv(frame_rows, out / "frames.csv", FRAME_COLUMNS),
        "wells": write_csv(wells, out / "wells.csv", WELL_COLUMNS),
        "kill_curves": plot_kill_curves(wells, out / "kill_curves.png", title=title),
        "plate_map": plot_plate_map(wells, out / "plate_map.png"),
    }


def readout_training_set(root, out=None) -> dict[str, Path]:
    """The readout of a training set from its ``manifest.csv`` (see `write_readout`).

    Parameters
    ----------
    root : path-like
        The training-set folder.
    out : path-like, optional
        Where to write; ``root / "readout"`` by default.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"training-set folder not found: {root}")
    rows = manifest_readout(root)
    return write_readout(rows, Path(out) if out is not None else root / "readout",
                         title=f"Kill curves: {root.name}")
