"""Plates as imagers write them, read lazily with tifffile.

Two kinds of plate are understood:

- **Folders of single-channel TIFFs**, one file per well × site × channel × time
  point, recognised by a regular expression with named groups ``well``, ``site``,
  ``channel`` and ``time`` matched against each file's path relative to the plate
  folder (``/``-separated). Built in: BioTek Gen5 / Cytation (``gen5``) and
  Molecular Devices ImageXpress (``imagexpress``); any other naming through
  ``pattern=``.
- **Stacks** (``stack``): multi-page OME-, ImageJ- or plain TIFFs with axes ``T``,
  ``C``, ``Y``, ``X``, of one position (well x site) each or of several: see
  `livedead_gpu.io.stacks`.

`open_plate` only lists files and reads TIFF headers of stacks; pixel data are read
when `Plate.read` asks for one frame (three 2-D planes), so a plate larger than
memory is fine.

Frame keys are ``FrameKey(well, site, time)``. ``site`` and ``time`` are the numbers
in the file names (0 where a name carries none); in a stack, ``time`` is the
0-based index along ``T``. Two stacks or positions of one well and site are an error.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tifffile

__all__ = [
    "CHANNEL_ROLES",
    "DEFAULT_CHANNEL_MAP",
    "IMAGEXPRESS_CHANNEL_MAP",
    "LAYOUTS",
    "PATTERNS",
    "Frame",
    "FrameKey",
    "Plate",
    "PlateError",
    "open_plate",
    "parse_channel_map",
]

CHANNEL_ROLES = ("brightfield", "hoechst", "draq7")
IGNORE = "ignore"
LAYOUTS = ("auto", "gen5", "imagexpress", "stack")

_WELL = r"[A-Za-z]{1,2}\d{1,3}"
#: The built-in file-name patterns, matched (``re.search``) against the path
#: relative to the plate folder (the extension in any case: ``.tif``, ``.TIF``).
PATTERNS = {
    "gen5": (
        # newer Gen5: B2_02_SP10Z10_C1_Bright Field_T001.tif (well, read step,
        # position and Z step, channel number, channel name, time point)
        rf"(?:^|/)(?P<well>{_WELL})_(?P<step>\d+)_(?:SP|P)?(?P<site>\d+)(?:Z(?P<z>\d+))?"
        r"_C(?P<cindex>\d+)_(?P<channel>[^/]+?)_T(?P<time>\d+)\.(?i:tiff?)$",
        # older Gen5: A1_01_1_1_DAPI_001.tif (well, read step, channel number,
        # position, channel name, time point)
        rf"(?:^|/)(?P<well>{_WELL})_(?P<step>\d+)_(?P<cindex>\d+)_(?P<site>\d+)"
        r"_(?P<channel>[^/]+?)_(?P<time>\d+)\.(?i:tiff?)$",
    ),
    "imagexpress": (
        # TimePoint_3/A01_s1_w2.tif; MetaXpress prefixes the plate's name
        # (Plate1_B02_s1_w1.TIF), leaves out the site of one-site wells (Plate1_B02_w1.TIF)
        # and may follow the name with a GUID; a Z series puts each step in ZStep_N/, its
        # projection (when saved) where a single plane goes
        r"(?:^|/)(?:TimePoint_(?P<time>\d+)/)?(?:ZStep_(?P<z>\d+)/)?(?:[^/]*_)?(?P<well>[A-Za-z]{1,2}\d{2})"
        r"(?:_s(?P<site>\d+))?_(?P<channel>w\d+)(?:[0-9A-Fa-f-]{36})?\.(?i:tiff?)$",
    ),
}
_STACK_NAME = re.compile(rf"^(?P<well>{_WELL})(?:[_-]s?(?P<site>\d+))?(?:[_.-]|$)")
#: a series or position named after its well (and site): ``B2``, ``B02_s2``
_SERIES_NAME = re.compile(rf"(?P<well>{_WELL})(?:[_-]s?(?P<site>\d+))?")
#: Micro-Manager's HCS position names, anywhere in the name: ``exp_MMStack_B2-Site_3.ome.tif``
_MM_SITE = re.compile(rf"(?:^|[_.-])(?P<well>{_WELL})-Site_(?P<site>\d+)(?:[_.-]|$)", re.IGNORECASE)
#: a preview image saved beside the data (Gen5 "_thumb", MetaXpress "_Thumb", "thumbnail")
_THUMBNAIL = re.compile(r"thumb", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).casefold()


#: Channel names (compared without case, spaces, ``_`` or ``-``) -> role.
DEFAULT_CHANNEL_MAP = {
    "Bright Field": "brightfield", "Brightfield": "brightfield", "BF": "brightfield",
    "DAPI": "hoechst", "Hoechst": "hoechst", "Hoechst 33342": "hoechst",
    "Cy5": "draq7", "Draq7": "draq7", "PI": "draq7", "Propidium Iodide": "draq7",
}
#: ImageXpress names wavelengths only by number; this is the order assumed when
#: no ``channel_map`` says otherwise.
IMAGEXPRESS_CHANNEL_MAP = {"w1": "brightfield", "w2": "hoechst", "w3": "draq7"}


class PlateError(ValueError):
    """A plate that cannot be read as asked: the message names the file(s)."""


class FrameKey(NamedTuple):
    well: str
    site: int
    time: int


@dataclass(frozen=True, eq=False)
class Frame:
    """The three channels of one frame, read from disk.

    Attributes
    ----------
    key : FrameKey
    brightfield, hoechst, draq7 : (M, N) ndarray
        As stored (usually uint16 or uint8).
    channel_names : dict
        Role -> the channel's name in the plate (e.g. ``"Bright Field"``).
    sources : dict
        Role -> where it was read from: a path, or in a stack ``path[t=..,c=..]``
        (``path[series=..,t=..,c=..]`` or ``path[r=..,t=..,c=..]`` for one of several
        positions: the index into tifffile's ``series``, or along Micro-Manager's ``R``).
    pixel_size : float or None
        Micrometres per pixel, when the files say.
    """

    key: FrameKey
    brightfield: np.ndarray
    hoechst: np.ndarray
    draq7: np.ndarray
    channel_names: dict
    sources: dict
    pixel_size: float | None = None

    def stack(self) -> np.ndarray:
        """(3, M, N) array in the order brightfield, hoechst, draq7."""
        return np.stack([self.brightfield, self.hoechst, self.draq7])


def parse_channel_map(items) -> dict:
    """``["Texas Red=draq7", "w1=brightfield"]`` (or a dict) -> ``{name: role}``.

    Roles are ``brightfield``, ``hoechst``, ``draq7`` or ``ignore`` (drop a channel a
    default would map).
    """
    if items is None:
        return {}
    if isinstance(items, dict):
        pairs = list(items.items())
    else:
        pairs = []
        for item in items:
            name, sep, role = str(item).rpartition("=")
            if not sep or not name.strip():
                raise ValueError(f"channel map entry must read NAME=ROLE, got {item!r}")
            pairs.append((name.strip(), role.strip()))
    out = {}
    for name, role in pairs:
        role = str(role).strip().lower()
        if role not in CHANNEL_ROLES + (IGNORE,):
            raise ValueError(
                f"channel map: role of {name!r} must be one of "
                f"{', '.join(CHANNEL_ROLES + (IGNORE,))}, got {role!r}")
        out[str(name)] = role
    return out


def _role_lookup(user_map, defaults):
    table = {_norm(k): v for k, v in defaults.items()}
    table.update({_norm(k): v for k, v in parse_channel_map(user_map).items()})
    return table


def _default_role(name, defaults):
    """A channel's role by its name alone: a default name, or one with it in front
    ("Hoechst 405", "Draq7_640"; names of 4 letters or more, so "BFP" is no "BF")."""
    key = _norm(name)
    if key in defaults:
        return defaults[key]
    return next((role for k, role in defaults.items() if len(k) >= 4 and key.startswith(k)), None)


@dataclass(eq=False)
class Plate:
    """A plate on disk: frame keys now, pixels on demand.

    Attributes
    ----------
    root : Path
    layout : {"gen5", "imagexpress", "stack", "pattern"}
    problems : dict
        ``FrameKey -> message`` for frames that cannot be read as found at discovery
        (a missing channel or time point, two files for one channel); the message
        names the files. `read` raises `PlateError` with that message.
    ignored : list of Path
        TIFF files that match no pattern.
    """

    root: Path
    layout: str
    problems: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)

    def keys(self) -> list[FrameKey]:
        """All frame keys found, sorted (those in `problems` included)."""
        raise NotImplementedError

    def read(self, key) -> Frame:
        """Read one frame's three channels."""
        raise NotImplementedError

    def sources(self, key) -> list[Path]:
        """The files a frame is read from."""
        raise NotImplementedError

    def roles(self, key) -> dict:
        """Which channel plays which role in a frame: ``{role: channel name or index}``.

        Part of what a resumed export compares: the same files with the channels
        mapped otherwise (a corrected channel map) make another frame. ``{}`` where
        unknown.
        """
        return {}

    @property
    def wells(self) -> list[str]:
        return sorted({k.well for k in self.keys()})

    def __len__(self):
        return len(self.keys())

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, key):
        return FrameKey(*key) in set(self.keys())

    def _problem(self, key):
        key = FrameKey(*key)
        if key in self.problems:
            raise PlateError(self.problems[key])
        if key not in set(self.keys()):
            raise KeyError(f"no frame {tuple(key)!r} in plate {str(self.root)!r}")
        return key


# --------------------------------------------------------------------------- folders


@dataclass(eq=False)
class FolderPlate(Plate):
    """Single-channel TIFFs, one per well × site × channel × time point."""

    files: dict = field(default_factory=dict)   # FrameKey -> {role: (channel name, Path)}
    _keys: list = field(default_factory=list)

    def keys(self):
        return self._keys

    def sources(self, key):
        return [p for _, p in self.files.get(FrameKey(*key), {}).values()]

    def roles(self, key):
        return {role: name for role, (name, _) in self.files.get(FrameKey(*key), {}).items()}

    def read(self, key) -> Frame:
        key = self._problem(key)
        chans = self.files[key]
        arrays, pixel_size = {}, None
        for role in CHANNEL_ROLES:
            name, path = chans[role]
            arrays[role], size = _read_plane(path)
            pixel_size = pixel_size or size
        _check_shapes(arrays, {r: str(chans[r][1]) for r in CHANNEL_ROLES})
        return Frame(key, *(arrays[r] for r in CHANNEL_ROLES),
                     channel_names={r: chans[r][0] for r in CHANNEL_ROLES},
                     sources={r: str(chans[r][1]) for r in CHANNEL_ROLES}, pixel_size=pixel_size)


def _read_plane(path):
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            size = _pixel_size(tif)
            data = tif.series[0].asarray() if tif.series else page.asarray()
    except Exception as e:  # tifffile raises many kinds on a damaged file
        raise PlateError(f"cannot read {str(path)!r}: {_why(e)}") from None
    data = np.squeeze(data)
    if data.ndim != 2:
        raise PlateError(f"{str(path)!r} holds shape {data.shape}; a single-channel 2-D image was expected")
    return data, size


def _why(e: Exception) -> str:
    """A damaged TIFF makes tifffile raise anything from TiffFileError to IndexError."""
    if isinstance(e, OSError) and not isinstance(e, EOFError):
        return str(e) or type(e).__name__
    return f"not a readable TIFF ({type(e).__name__}: {e})"


def _check_shapes(arrays, sources):
    shapes = {r: a.shape for r, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{sources[r]} {shapes[r]}" for r in arrays)
        raise PlateError(f"channels of one frame differ in shape: {detail}")


def _folder_plate(root, layout, patterns, channel_map, defaults, skip=(), z=None) -> FolderPlate:
    regexes = []
    for p in patterns:
        try:
            rx = re.compile(p)
        except re.error as e:
            raise ValueError(f"pattern {p!r} is not a valid regular expression: {e}") from None
        missing = {"well", "channel"} - set(rx.groupindex)
        if missing:
            raise ValueError(
                f"pattern {p!r} needs named groups (?P<well>...) and (?P<channel>...); "
                f"missing {', '.join(sorted(missing))}")
        regexes.append(rx)
    lookup = _role_lookup(channel_map, defaults)
    found = defaultdict(dict)   # key -> {channel name: [paths]}
    ignored = []
    for path in _tiffs(root, skip):
        rel = path.relative_to(root).as_posix()
        m = next((m for m in (rx.search(rel) for rx in regexes) if m), None)
        if m is None:
            ignored.append(path)
            continue
        g = m.groupdict()
        for group in ("well", "channel"):
            if not g[group]:
                raise ValueError(f"pattern matched {rel!r} but its {group} group is empty: {g}")
        try:
            key = FrameKey(g["well"].upper(), int(g.get("site") or 0), int(g.get("time") or 0))
        except ValueError:
            raise ValueError(f"pattern matched {rel!r} but site/time are not integers: {g}") from None
        found[key].setdefault(g["channel"], []).append((int(g["z"]) if g.get("z") else None, path))
    if not found:
        n = len(ignored)
        eg = f"; e.g. {ignored[0].relative_to(root).as_posix()!r}" if ignored else ""
        raise PlateError(
            f"no file in {str(root)!r} matches the {layout} pattern ({n} TIFF file(s) found{eg})")

    names = {_norm(n) for chans in found.values() for n in chans}
    unused = [k for k in parse_channel_map(channel_map) if _norm(k) not in names]
    if unused:
        # A warning, not an error: one lab-wide map may name channels a plate lacks.
        warnings.warn(f"channel map: {', '.join(map(repr, unused))} match{'es' * (len(unused) == 1)} no channel "
                      f"of {str(root)!r} "
                      f"(its channels: {', '.join(sorted({n for c in found.values() for n in c}))})",
                      UserWarning, stacklevel=3)

    files, problems = {}, {}
    for key, chans in found.items():
        roles, extra, errors = {}, [], []
        for name, planes in sorted(chans.items()):
            role = lookup.get(_norm(name))
            paths, why = _focal_plane(planes, z)
            if why:
                errors.append(f"channel {name!r}: {why}")
                paths = [p for _, p in planes]   # a problem frame: its files, to name
            elif len(paths) > 1:
                errors.append(f"{len(paths)} files for channel {name!r}: "
                              + ", ".join(repr(str(p)) for p in sorted(paths)))
            if role in CHANNEL_ROLES:
                if role in roles:
                    errors.append(f"channels {roles[role][0]!r} and {name!r} both map to {role}")
                roles[role] = (name, sorted(paths)[0])
            else:
                extra.append(name)
        missing = [r for r in CHANNEL_ROLES if r not in roles]
        if missing:
            have = ", ".join(repr(str(p)) for ps in chans.values() for _, p in ps)
            errors.append(
                f"no {'/'.join(missing)} channel (unmapped channels: {extra or 'none'}; "
                f"see channel_map, --channel-map on the command line); files: {have}")
        files[key] = roles
        if errors:
            problems[key] = f"{_key_text(key)}: " + "; ".join(errors)

    # time points present elsewhere in the plate but missing for a well/site
    times = sorted({k.time for k in found})
    by_pos = defaultdict(set)
    for k in found:
        by_pos[(k.well, k.site)].add(k.time)
    for (well, site), have in by_pos.items():
        for t in times:
            if t not in have:
                key = FrameKey(well, site, t)
                problems[key] = (f"{_key_text(key)}: no files for this time point "
                                 f"(other wells have it) under {str(root)!r}")
    keys = sorted(set(files) | set(problems))
    return FolderPlate(root=root, layout=layout, problems=problems, ignored=ignored,
                       files=files, _keys=keys)


def _focal_plane(planes, z):
    """The files of one channel of a frame at focal plane ``z``: ``(paths, None)``, or ``([], why)``.

    ``planes``: ``(z or None, path)`` pairs, z from the file name (None where it names none).
    With ``z`` None a file naming no plane wins (MetaXpress's projection beside its ``ZStep_``
    folders), else there must be one plane; with ``z`` given, the files of that plane, or a
    channel's files naming none (a channel imaged in one plane).
    """
    flat = [p for k, p in planes if k is None]
    steps = sorted({k for k, _ in planes if k is not None})
    if z is None:
        if flat or len(steps) <= 1:
            return flat or [p for _, p in planes], None
        return [], (f"{len(steps)} focal planes (z = {', '.join(map(str, steps))}); choose one with z= "
                    "(--z on the command line)")
    at = [p for k, p in planes if k == z]
    if at or not steps:
        return at or flat, None
    return [], f"no file of focal plane z={z} (its planes: z = {', '.join(map(str, steps))})"


def _key_text(key):
    return f"well {key.well} site {key.site} time {key.time}"


def _tiffs(root, skip=()):
    """The TIFF files under ``root``, but for hidden ones and those under the folders ``skip``
    (relative to ``root``)."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file()
                  and not p.name.startswith(".")
                  and not any(p.relative_to(root).is_relative_to(s) for s in skip))


def _training_sets(root):
    """Folders under ``root`` (relative to it) that hold a training set: a manifest.csv beside records/."""
    return [m.parent.relative_to(root) for m in Path(root).rglob("manifest.csv")
            if (m.parent / "records").is_dir() and m.parent != Path(root)]


def _inside(root, folders):
    """Those of ``folders`` that lie strictly inside the folder ``root``, relative to it."""
    out = []
    for folder in folders:
        try:
            rel = Path(folder).resolve().relative_to(Path(root).resolve())
        except ValueError:
            continue
        if rel.parts:
            out.append(rel)
    return out


# --------------------------------------------------------------------------- TIFF metadata


def _ome_images(tif) -> list:
    """The OME-XML's Image elements (dicts, in order); [] where there are none."""
    if not tif.is_ome:
        return []
    try:
        images = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]
    except Exception:
        return []
    return [im for im in (images if isinstance(images, list) else [images]) if isinstance(im, dict)]


def _pixel_size(tif, image=None) -> float | None:
    """Micrometres per pixel from OME (the ``image``, by default the first), ImageJ, Gen5 XML or
    resolution tags; None if unknown."""
    try:
        if tif.is_ome:
            image = image if image is not None else _ome_images(tif)[0]
            pixels = image["Pixels"]
            if "PhysicalSizeX" in pixels:
                unit = pixels.get("PhysicalSizeXUnit", "µm")
                scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
                if scale:
                    return float(pixels["PhysicalSizeX"]) * scale
        page = tif.pages.first
        desc = page.description or ""
        if "<BTIImageMetaData" in desc:
            w = re.search(r"<PixelWidth>([\d.]+)<", desc)
            um = re.search(r"<ImageWidthMicrons>([\d.]+)<", desc)
            if w and um and float(w.group(1)) > 0:
                return float(um.group(1)) / float(w.group(1))
        tag = page.tags.get("XResolution")
        if tag is None:
            return None
        num, den = tag.value
        if not num or not den:
            return None
        per_unit = num / den
        unit = page.tags.get("ResolutionUnit")
        unit = int(unit.value) if unit is not None else 2
        ij = tif.imagej_metadata or {}
        # Fiji writes µm as the escape "\u00B5m" (compared lowercased: "\u00b5m")
        if unit == 1 and str(ij.get("unit", "")).lower() in ("micron", "microns", "um", "µm", "μm", "\\u00b5m"):
            return 1.0 / per_unit
        if unit == 3 and per_unit != 1:
            return 1e4 / per_unit
    except Exception:
        return None
    return None


# --------------------------------------------------------------------------- entry


def open_plate(path, layout: str = "auto", pattern: str | None = None, channel_map=None,
               exclude=(), z: int | None = None) -> Plate:
    """Discover the frames of a plate; read nothing but names and stack headers.

    Parameters
    ----------
    path : str or Path
        A plate folder, or one stack file (of one position or several; one file of a
        Micro-Manager dataset reads all of its positions).
    layout : {"auto", "gen5", "imagexpress", "stack"}
        ``"auto"``: a file is a stack; a folder is ImageXpress when its names match
        that pattern, else Gen5, else (``pattern`` with no ``channel`` group, or no
        match at all) a folder of stacks.
    pattern : str, optional
        A regular expression with named groups ``well`` and ``channel`` (and
        optionally ``site``, ``time``) searched in each file's path relative to the
        folder: replaces the layout's pattern. For stacks, only ``well`` and
        ``site`` are used, of a file's one position; of several positions in a file,
        each is named by its own name where that names a well, else by the file's well
        (``pattern``'s) and its index.
    channel_map : dict or list of "NAME=ROLE", optional
        Channel names -> ``brightfield``/``hoechst``/``draq7``/``ignore``, on top of
        `DEFAULT_CHANNEL_MAP` (and `IMAGEXPRESS_CHANNEL_MAP` for ImageXpress; for a
        stack, a name may also be the channel index ``"0"``, ``"1"`` ...). A stack
        with three unnamed or unmapped channels and no map is read in the order
        brightfield, Hoechst, Draq7.
    exclude : iterable of str or Path, optional
        Folders whose files are not part of the plate, e.g. a training set written
        inside the plate folder (`livedead_gpu.export.export_plate` passes its
        output folder).
    z : int, optional
        The focal plane to read of plates imaged in several: the number a folder
        layout's file names give it (Gen5's ``...Z2_...``, ImageXpress's ``ZStep_2/``,
        a pattern's ``(?P<z>...)`` group), or the index along a stack's Z axis from 0.
        A channel imaged in one plane is read whatever ``z``. None: each frame must
        hold one plane, or a file naming none (MetaXpress's projection beside its
        ``ZStep_`` folders), which is read.

    Returns
    -------
    Plate

    Raises
    ------
    PlateError
        When nothing in ``path`` can be read as a plate (naming the path), or two
        stacks or positions have one well and site (naming both).
    """
    path = Path(path)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not path.exists():
        raise FileNotFoundError(f"plate {str(path)!r} does not exist")
    parse_channel_map(channel_map)  # validate early
    if z is not None and (isinstance(z, bool) or not isinstance(z, (int, np.integer)) or z < 0):
        raise ValueError(f"z must be a focal plane number >= 0 or None, got {z!r}")
    skip = _inside(path, [exclude] if isinstance(exclude, (str, Path)) else exclude) if path.is_dir() else []
    # Training sets written inside the plate folder by earlier runs are outputs, not frames
    # (a second export into another OUT had read the first one's cells as stacks).
    skip += _training_sets(path) if path.is_dir() else []
    if pattern is not None:
        try:
            has_channel = "channel" in re.compile(pattern).groupindex
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {e}") from None
    if layout == "auto":
        if path.is_file():
            layout = "stack"
        elif pattern is not None:
            layout = "pattern" if has_channel else "stack"
        else:
            layout = _detect(path, skip)
    if layout == "stack":
        from .stacks import _stack_plate   # (stacks imports this module)

        return _stack_plate(path, pattern, channel_map, skip, None if z is None else int(z))
    if not path.is_dir():
        raise PlateError(f"plate {str(path)!r} is a file; layout {layout!r} needs a folder")
    defaults = dict(DEFAULT_CHANNEL_MAP)
    if layout == "imagexpress":
        defaults.update(IMAGEXPRESS_CHANNEL_MAP)
    patterns = (pattern,) if pattern is not None else PATTERNS.get(layout, ())
    return _folder_plate(path, layout, patterns, channel_map, defaults, skip, None if z is None else int(z))


def _detect(root: Path, skip=()) -> str:
    names = [p.relative_to(root).as_posix() for p in _tiffs(root, skip)]
    if not names:
        raise PlateError(f"no TIFF files in {str(root)!r}")
    counts = {layout: sum(any(re.compile(p).search(n) for p in PATTERNS[layout]) for n in names)
              for layout in ("imagexpress", "gen5")}
    found = [layout for layout, n in counts.items() if n]
    if len(found) == 2:
        # Two imagers' files in one folder (or two plates): reading one layout leaves the
        # other's frames out, which should not pass unsaid.
        warnings.warn(f"{str(root)!r} holds {counts['imagexpress']} ImageXpress and {counts['gen5']} Gen5 file "
                      "name(s); reading it as ImageXpress, the Gen5 files are left out (layout='gen5' reads "
                      "those; better, one plate per folder)", UserWarning, stacklevel=3)
    return found[0] if found else "stack"
