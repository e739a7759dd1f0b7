"""The one parameter object of the segmentation: the article's values where they measured well, presets."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SegmentParams", "as_params"]

_BLOCK_MAX = "block-max"


@dataclass(frozen=True)
class SegmentParams:
    """Parameters of the five-class segmentation of one frame.

    Parameters
    ----------
    offset : float or None, optional
        Ratio by which the block-max threshold is raised over the peak ``k`` of the
        block-maximum histogram: the threshold is ``int(offset * k + 1)``. ``None``
        uses ``k`` itself. The article's 1.2 by default; must lie in [1, 10].
    coarseness : int, optional
        Side in pixels of the square blocks whose maxima vote in the histogram
        (brightfield gradient and nuclei alike). 16 by default; 2 to 1024.
    kernel_size : int, optional
        Side of the elliptical footprint used to close the cell area. Odd, 3 to 99;
        5 by default. Even sizes are refused because OpenCV anchors an even
        footprint off-centre, so the backends could not agree.
    dilations, erosions : int, optional
        Iterations of the cell-area dilation and of the erosion that follows it
        (2 and 2, as in the article); 0 to 50.
    cell_threshold : {"noise", "block-max"}, optional
        How the brightfield gradient is thresholded. ``"block-max"`` is the article's
        histogram of block maxima; its peak is the background's only when most blocks
        are background, and on confluent fields it lands on cell texture and finds
        almost no cell. ``"noise"`` (default) takes the peak ``k`` from the gradient's
        noise floor instead (see `livedead_gpu.stages.gradient.noise_threshold`), then
        applies ``offset`` the article's way.
    smoothing : float, optional
        Sigma in pixels of a Gaussian applied to brightfield before the Sobel
        operator, 0 to 10; 0 is the article's unsmoothed gradient. 1.0 by default:
        without it, camera noise in low-contrast fields breaks the cell area into
        specks.
    noise_ceiling : float, optional
        For ``cell_threshold="noise"``: the noise floor is at most this multiple of
        the white-noise prediction from the camera noise, 1 to 10; 2.0 by default.
        It binds only in fields with no flat background, where the flattest blocks
        hold cell texture rather than noise.
    gradient_levels : int or None, optional
        For ``cell_threshold="block-max"``: how the float Sobel magnitude is put on the integer scale the block-max
        histogram counts on. The magnitude is divided by
        ``scale = max(1, q / gradient_levels)``, ``q`` the 99th percentile of the
        block maxima, then floored and saturated to uint16. An 8-bit brightfield
        keeps ``scale = 1`` (the article's integer gradient); a 16-bit one no longer
        saturates at 65,535 (where the article's peak lands and finds no cell).
        ``None`` keeps ``scale = 1`` always (the article's cast, saturating instead of
        wrapping). 1024 by default; 16 to 65,535.
    nucleus_threshold : {"contrast", "block-max"} or int, optional
        ``"contrast"`` (default): the background (a grey opening wider than a
        nucleus, smoothed) is subtracted, then the threshold sits ``nucleus_level``
        of the way from the background to the typical nucleus intensity, holes are
        filled and objects under a tenth of a nucleus' area dropped (see
        `livedead_gpu.stages.nuclei.contrast_mask`). ``"block-max"`` is the
        article's threshold of the raw image; an int is a fixed intensity (pixels
        strictly above it are nucleus); 0 to 65,535. The article's block-max finds
        specks rather than nuclei once nuclei are much larger than its blocks
        (object F1 0.06 against 0.79 on the Coelho set).
    nucleus_kernel : int, optional
        Side of the elliptical footprint that closes the nucleus masks. Odd, 1 to
        99 (1 disables the closing); 3 by default.
    nucleus_smoothing : "auto" or float, optional
        Sigma (px) of a Gaussian on each nuclear stain before its mask is
        thresholded (rounded back to the stain's integer type); the live/dead call
        still reads the raw Draq7 and Hoechst. 0 (none) to 10, or ``"auto"``
        (default; the "contrast" threshold only, else 0): 1 when the Hoechst
        nuclei stand under 9 noise sigmas over the background, the objects the
        threshold finds stand under 20 (a few bright nuclei in an empty field are
        not dim ones), and a 1-px Gaussian lifts the nuclei 10 sigmas over its own
        noise; else 0. No real image measured so far is smoothed (they stand 9.3
        sigmas and up); Coelho's images with camera noise added score higher
        (benchmarks/README.md, "Noisy Hoechst"). Each result's
        ``thresholds["hoechst_smoothing"]`` is the sigma used. On very dim nuclei
        (under ~2.5 sigmas a pixel) give ``nucleus_diameter_px`` too.
    separation : {"watershed", "voronoi"}, optional
        How the cell area is split among the nuclei: ``"watershed"`` is the
        article's OpenCV marker watershed (on the CPU even in GPU runs);
        ``"voronoi"`` gives each cell-area pixel to the nucleus nearest along paths
        inside the cell area, on the backend's own device.
    min_nucleus_area : int, optional
        Nuclei (connected components, 8-connectivity) smaller than this many pixels
        are dropped; 0 to 10**6; 20 by default. The article has no size filter
        (equivalent to 0); without it every bright speck becomes a cell. With
        ``nucleus_threshold="contrast"`` it is a floor under the size filter below.
    nucleus_level : float, optional
        For ``nucleus_threshold="contrast"``: where the threshold sits between the
        local background (0) and the typical nucleus intensity (1); 0.05 to 0.95,
        0.35 by default (the half-maximum edge of a blurred nucleus, a little low
        because hand-drawn outlines are drawn on the outside of the edge).
    nucleus_edge : float, optional
        For ``nucleus_threshold="contrast"``: each nucleus found is then cut at this
        fraction of its local mean contrast over the background (the mean over the
        mask within one nucleus diameter; never below the threshold), so a bright
        nucleus keeps its half-height edge instead of the faint skirt a threshold
        set for the dim ones leaves around it, and a dim one keeps its own; 0 to
        0.95, 0.5 by default; 0 leaves the mask as thresholded.
    pixel_size : float or None, optional
        Pixel size in µm (object side), 1e-3 to 100. Needed to give
        ``nucleus_diameter`` and ``min_nucleus_area_um2`` in µm.
    nucleus_diameter : float or None, optional
        Typical nucleus diameter in µm (needs ``pixel_size``); 0.5 to 1000. Sets the
        background scale and the size filter of the "contrast" threshold.
    nucleus_diameter_px : float or None, optional
        The same in pixels, when the pixel size is unknown; 3 to 2000. Not both
        (a ``ValueError``: which one to use is no choice to make silently). With neither
        given (the default) the diameter is measured on the image: the median
        equivalent diameter of a first segmentation's objects, after objects under
        a tenth of the 90th-percentile area (specks) are left out.
    min_nucleus_area_um2 : float or None, optional
        For "contrast": the size filter in µm² (needs ``pixel_size``); 0 to 10**6.
        ``None`` (default): a tenth of the area of a disc of the nucleus diameter.
    dead_call : {"ratio", "touch"}, optional
        How a nucleus is called dead (`livedead_gpu.stages.find_nuclei`).
        ``"ratio"`` (default): its mean Draq7 is above ``dead_ratio`` times the
        Draq7 background (``draq7_background``), so dim Draq7 still
        counts and Hoechst bleed-through does not. ``"touch"``: the article's rule, a
        nucleus touching the thresholded Draq7 mask is dead.
    dead_ratio : float, optional
        For ``dead_call="ratio"``; 1 to 100, 3.0 by default.
    bleed : "auto" or float, optional
        For ``dead_call="ratio"``: the share of a nucleus' Hoechst signal (over the
        Hoechst background) that shows in the Draq7 channel, taken off its Draq7
        before the call (`livedead_gpu.stages.nuclei.bleed_coefficient`). A number
        in [0, 1] is used as given (measure it on a Hoechst-only well; 0 is the
        plain ratio rule). ``"auto"`` (default) estimates it on each frame from the
        nuclei whose Draq7 follows their Hoechst most closely (those under the dead
        line before any correction, when at least five are), at most
        ``MAX_BLEED`` (0.1): live nuclei otherwise turn "dead" once their Hoechst
        bleeds into Draq7 (at 3 % bleed, 9 of 42 on a synthetic frame).
    draq7_background : {"local", "field"}, optional
        For ``dead_call="ratio"``: what "the Draq7 background" is.
        ``"local"`` (default): the background where each nucleus lies, from a mesh
        of blocks about four nucleus diameters wide, each the median Draq7 outside
        the nuclei, smoothed and interpolated
        (`livedead_gpu.stages.nuclei.local_background`), so a glow or a vignetted
        corner neither kills the live nuclei under it nor hides the dead ones on the
        dark side. ``"field"``: one median for the whole field.
    draq7_dark : float, optional
        For ``dead_call="ratio"``: the Draq7 camera's dark level (offset, bias) in
        grey levels, 0 to 65535, 0 by default. The dead ratio is one of
        fluorescence, so both a nucleus' Draq7 and its background are counted from
        this level: a camera's offset of 1,000 on 12-bit data otherwise reads
        every dead nucleus of a synthetic frame live (its Draq7 / background ratio
        falls from ~50 to under 2). Read it off a dark frame (shutter closed) or the
        camera's specification; 0 for data already offset-corrected.
    split_nuclei : bool, optional
        Split touching nuclei so the labels are one per nucleus (True by default;
        the article has no split): seeds at the hills of the distance to the
        nucleus mask's edge, grown back over the mask
        (`livedead_gpu.stages.nuclei.split_nuclei`). Object F1 0.79 -> 0.87 on the
        Coelho set, 0.22 -> 0.45 on the ADCC set (benchmarks/README.md).
    split_depth : float, optional
        How much the distance to the edge must dip between two hills, as a
        fraction of the nucleus radius, for them to be two nuclei; 0 to 1, 0.15 by
        default. Larger merges more: 0.2 (the default before 2026-11-25) left
        chains of nuclei pressed end to end merged (StarDist's test image F1 0.68,
        0.75 at 0.15; Coelho 0.89 and ADCC 0.50-0.51 either way; benchmarks/README.md).
    split_spacing : float, optional
        The radius, in nucleus diameters, of the window the distance to the edge is
        compared over: a hill lower by more than ``split_depth`` than another within
        it seeds nothing (a bump on a nucleus' side, the pixel-scale steps along the
        flat ridge of an elongated nucleus), and a dip between two hills counts only
        when they lie within it of each other. 0.1 to 3, 0.5 by default (a nucleus
        radius); smaller windows over-split (a tenth of a diameter cuts nuclei into
        pieces), larger ones cost time (3x3 maxima, one per pixel of radius).
    split_merge : float, optional
        A piece of a split object smaller than this fraction of a typical
        nucleus' area joins the piece it shares the most outline with (a sliver cut
        off a kidney-shaped or ragged nucleus at a shallow neck is no nucleus); the
        Draq7-bright regions stay nuclei of their own. 0 to 1, 0.2 by default; 0
        keeps every piece. Coelho F1 0.889 -> 0.898, ADCC 0.510 -> 0.518, StarDist's
        test image 0.745 either way (benchmarks/README.md).
    notch_depth : float, optional
        With ``split_nuclei``: nuclei pressed flat together, one object with one
        hill of the distance to its edge, are cut along the line between the two
        notches of its outline when both are at least this deep, in nucleus radii
        (`livedead_gpu.stages.nuclei.cut_notches`). 0 to 1, 0.2 by default; 0 cuts
        nothing. Merged nuclei 97 -> 79 over Coelho, ADCC and StarDist's test image,
        F1 up on each (StarDist's 0.745 -> 0.778; benchmarks/README.md).
    dead_seeds : bool, optional
        With ``split_nuclei`` and ``dead_call="ratio"``: every Draq7-bright region
        (Draq7 after a 1-px Gaussian above ``dead_ratio`` times its background, at
        least the nucleus size filter's area) is a nucleus of its own and joins the
        nucleus mask, so a dead nucleus pressed against a live one is not averaged
        with it and one too dim in Hoechst is still found. A region with no
        Hoechst-mask pixel must be a quarter of a nucleus' area (half its diameter):
        smaller Draq7-bright specks are debris. True by default.
    preset : {"default", "measured", "article"}, optional
        The preset these values started from (see `SegmentParams.from_preset`),
        recorded with every output. A label: setting it on the constructor changes
        no other field; ``preset = "article"`` in a TOML file or
        ``from_preset("article")`` does.
    """

    offset: float | None = 1.2
    coarseness: int = 16
    kernel_size: int = 5
    dilations: int = 2
    erosions: int = 2
    cell_threshold: str = "noise"
    smoothing: float = 1.0
    noise_ceiling: float = 2.0
    gradient_levels: int | None = 1024
    nucleus_threshold: str | int = "contrast"
    nucleus_kernel: int = 3
    nucleus_smoothing: float | str = "auto"
    min_nucleus_area: int = 20
    separation: str = "watershed"
    nucleus_level: float = 0.35
    nucleus_edge: float = 0.5
    pixel_size: float | None = None
    nucleus_diameter: float | None = None
    nucleus_diameter_px: float | None = None
    min_nucleus_area_um2: float | None = None
    dead_call: str = "ratio"
    dead_ratio: float = 3.0
    bleed: float | str = "auto"
    draq7_background: str = "local"
    draq7_dark: float = 0.0
    split_nuclei: bool = True
    split_depth: float = 0.15
    split_spacing: float = 0.5
    split_merge: float = 0.2
    notch_depth: float = 0.2
    dead_seeds: bool = True
    preset: str = "default"

    def __post_init__(self):
        if self.offset is not None:
            _check_number("offset", self.offset, 1.0, 10.0)
        _check_int("coarseness", self.coarseness, 2, 1024)
        _check_int("kernel_size", self.kernel_size, 3, 99, odd=True)
        _check_int("dilations", self.dilations, 0, 50)
        _check_int("erosions", self.erosions, 0, 50)
        if self.cell_threshold not in ("noise", _BLOCK_MAX):
            raise ValueError(f"cell_threshold must be 'noise' or {_BLOCK_MAX!r}, got {_shown(self.cell_threshold)}")
        _check_number("smoothing", self.smoothing, 0.0, 10.0)
        _check_number("noise_ceiling", self.noise_ceiling, 1.0, 10.0)
        if self.gradient_levels is not None:
            _check_int("gradient_levels", self.gradient_levels, 16, 65535)
        if isinstance(self.nucleus_threshold, str):
            if self.nucleus_threshold not in (_BLOCK_MAX, "contrast"):
                raise ValueError(
                    f"nucleus_threshold must be {_BLOCK_MAX!r} or an int in [0, 65535] or 'contrast', "
                    f"got {_shown(self.nucleus_threshold)}"
                )
        else:
            _check_int("nucleus_threshold", self.nucleus_threshold, 0, 65535)
        _check_int("nucleus_kernel", self.nucleus_kernel, 1, 99, odd=True)
        if isinstance(self.nucleus_smoothing, str):
            if self.nucleus_smoothing != "auto":
                raise ValueError(f"nucleus_smoothing must be 'auto' or a number in [0.0, 10.0], "
                                 f"got {_shown(self.nucleus_smoothing)}")
        else:
            _check_number("nucleus_smoothing", self.nucleus_smoothing, 0.0, 10.0)
        _check_int("min_nucleus_area", self.min_nucleus_area, 0, 10**6)
        if self.separation not in ("watershed", "voronoi"):
            raise ValueError(f"separation must be 'watershed' or 'voronoi', got {_shown(self.separation)}")
        _check_number("nucleus_level", self.nucleus_level, 0.05, 0.95)
        _check_number("nucleus_edge", self.nucleus_edge, 0.0, 0.95)
        for name, lo, hi in (("pixel_size", 1e-3, 100.0), ("nucleus_diameter", 0.5, 1000.0),
                             ("nucleus_diameter_px", 3.0, 2000.0), ("min_nucleus_area_um2", 0.0, 1e6)):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), lo, hi)
        for name in ("nucleus_diameter", "min_nucleus_area_um2"):
            if getattr(self, name) is not None and self.pixel_size is None:
                raise ValueError(f"{name} is in µm and needs pixel_size (µm per pixel), got pixel_size=None")
        if self.nucleus_diameter is not None and self.nucleus_diameter_px is not None:
            # one diameter in two units: which would win is no choice to make silently
            raise ValueError(
                f"give nucleus_diameter (µm) or nucleus_diameter_px, not both; got nucleus_diameter="
                f"{self.nucleus_diameter} and nucleus_diameter_px={self.nucleus_diameter_px}")
        if self.nucleus_diameter is not None and not 3.0 <= self.nucleus_diameter / self.pixel_size <= 2000.0:
            # Each in its range, the two can still ask for a nucleus of 10**6 px.
            raise ValueError(
                f"nucleus_diameter / pixel_size must be 3 to 2000 px (as nucleus_diameter_px), got "
                f"{self.nucleus_diameter} µm / {self.pixel_size} µm per px = {self.nucleus_diameter / self.pixel_size:g} px")
        if self.dead_call not in ("ratio", "touch"):
            raise ValueError(f"dead_call must be 'ratio' or 'touch', got {_shown(self.dead_call)}")
        _check_number("dead_ratio", self.dead_ratio, 1.0, 100.0)
        if isinstance(self.bleed, str):
            if self.bleed != "auto":
                raise ValueError(f"bleed must be 'auto' or a number in [0, 1], got {_shown(self.bleed)}")
        else:
            _check_number("bleed", self.bleed, 0.0, 1.0)
        if self.draq7_background not in ("local", "field"):
            raise ValueError(f"draq7_background must be 'local' or 'field', got {_shown(self.draq7_background)}")
        _check_number("draq7_dark", self.draq7_dark, 0.0, 65535.0)
        for name in ("split_nuclei", "dead_seeds"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be true or false, got {_shown(getattr(self, name))}")
        _check_number("split_depth", self.split_depth, 0.0, 1.0)
        _check_number("split_spacing", self.split_spacing, 0.1, 3.0)
        _check_number("split_merge", self.split_merge, 0.0, 1.0)
        _check_number("notch_depth", self.notch_depth, 0.0, 1.0)
        if not isinstance(self.preset, str) or self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}, got {_shown(self.preset)}")
        # Equal parameters, one digest: a number field holds a float (1 -> 1.0, -0.0 -> 0.0), an
        # integer field an int and a flag a bool (NumPy scalars become Python's).
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _KINDS.get(f.type)
            if kind is not None and value is not None and not isinstance(value, str):
                object.__setattr__(self, f.name, kind(value) + 0.0 if kind is float else kind(value))

    @classmethod
    def from_preset(cls, name: str = "default", **overrides) -> SegmentParams:
        """The parameters of preset ``name``, with ``overrides`` on top.

        ``"default"``: the dataclass defaults. ``"measured"``: the best measured on
        real images (see benchmarks/README.md, "Label quality"): the "contrast"
        nucleus threshold, touching nuclei split, Draq7-bright regions as nuclei
        of their own and the Draq7-ratio dead call.
        ``"article"``: the article's method exactly, its typos fixed: block-max
        thresholds everywhere (cell area on the unsmoothed, unscaled gradient;
        nuclei), no nucleus size filter, no split of touching nuclei, the
        Draq7-mask dead rule.
        """
        if not isinstance(name, str) or name not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}, got {_shown(name)}")
        return cls(**{**PRESETS[name], **overrides, "preset": name})

    @property
    def diameter_px(self) -> float | None:
        """The expected nucleus diameter in pixels, or None when it is to be measured."""
        if self.nucleus_diameter is not None:
            return self.nucleus_diameter / self.pixel_size
        return self.nucleus_diameter_px

    @classmethod
    def from_toml(cls, path) -> SegmentParams:
        """Read parameters from a TOML file.

        The keys are the field names, at the top level or under a ``[segment]``
        table (not both); missing keys keep their defaults; ``offset = "none"``
        means ``None``. An unknown key is a ``ValueError`` naming it and the file.
        """
        path = Path(path)
        try:
            # utf-8-sig: a byte-order mark (Windows Notepad writes one) is not TOML's concern
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except FileNotFoundError:
            raise FileNotFoundError(f"parameter file {str(path)!r} does not exist") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"parameter file {str(path)!r} is a folder; expected a TOML file") from None
        except ValueError as e:   # TOMLDecodeError, UnicodeDecodeError, an int of over 4,300 digits
            raise ValueError(f"parameter file {str(path)!r} is not valid TOML: {e}") from None
        if "segment" in data:
            if not isinstance(data["segment"], dict):
                raise ValueError(f"{path}: segment must be a table ([segment]), got {data['segment']!r}")
            outside = sorted(set(data) - {"segment"})
            if outside:
                raise ValueError(f"{path}: parameter(s) {', '.join(outside)} outside the [segment] table; "
                                 "give every parameter under [segment] or none")
            data = data["segment"]
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "parameters") -> SegmentParams:
        """Build parameters from a mapping of field names to values (see `from_toml`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{source}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        values = dict(data)
        preset = values.pop("preset", "default")
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"{source}: preset must be one of {', '.join(map(repr, PRESETS))}, got {_shown(preset)}")
        for key in ("offset", "gradient_levels", "pixel_size", "nucleus_diameter", "nucleus_diameter_px",
                    "min_nucleus_area_um2"):
            if isinstance(values.get(key), str) and values[key].lower() == "none":
                values[key] = None
        try:
            return cls.from_preset(preset, **values)
        except (TypeError, ValueError) as e:
            if source == "parameters":
                raise
            raise type(e)(f"{source}: {e}") from None

    def to_dict(self) -> dict:
        """The parameters as a plain dict (JSON- and TOML-friendly but for ``None``)."""
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The parameters as a TOML document that `from_toml` reads back."""
        lines = ["[segment]"]
        for key, value in self.to_dict().items():
            lines.append(f"{key} = {json.dumps('none' if value is None else value)}")
        return "\n".join(lines) + "\n"

    def digest(self) -> str:
        """A short hash of the parameters, to tell outputs made with others apart.

        ``preset`` is a label, not a parameter: equal values under another preset's
        name make the same outputs, so a resumed run keeps them.
        """
        values = self.to_dict()
        del values["preset"]
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def as_params(params) -> SegmentParams:
    """``params`` checked: the defaults when None, else it must be a `SegmentParams`.

    Raises
    ------
    TypeError
        Anything else (a dict, even an empty one, is not taken for the defaults).
    """
    if params is None:
        return SegmentParams()
    if not isinstance(params, SegmentParams):
        raise TypeError(f"params must be a SegmentParams or None, got {type(params).__name__} {params!r:.60}")
    return params


#: The named presets: field values that differ from the dataclass defaults.
PRESETS = {
    "default": {},
    # The best measured on the real sets (benchmarks/README.md, "Label quality"): the
    # dataclass defaults since segment_frame runs `stages.find_nuclei`.
    "measured": {"nucleus_threshold": "contrast", "nucleus_edge": 0.5, "dead_call": "ratio", "split_nuclei": True,
                 "dead_seeds": True, "draq7_background": "local"},
    "article": {
        "offset": 1.2, "coarseness": 16, "kernel_size": 5, "dilations": 2, "erosions": 2,
        "cell_threshold": _BLOCK_MAX, "smoothing": 0.0, "gradient_levels": None,
        "nucleus_threshold": _BLOCK_MAX, "nucleus_kernel": 3, "nucleus_smoothing": 0.0, "min_nucleus_area": 0,
        "separation": "watershed", "dead_call": "touch", "split_nuclei": False,
    },
}


#: How each field's type stores its value (a str of "str | int" stays a str).
_KINDS = {"float": float, "float | None": float, "int": int, "int | None": int, "str | int": int, "float | str": float,
          "bool": bool}


def _shown(value) -> str:
    """``value`` as a message quotes it: `_show` for a huge integer, else its repr, cut at 60 characters."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return _show(value)
    return f"{value!r:.60}"


def _show(value) -> str:
    """``value`` for an error message: a huge integer abbreviated (``str`` of one over
    4,300 digits raises, and 400 digits say nothing a reader can use)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and abs(int(value)) >= 10**15:
        digits = int(abs(int(value)).bit_length() * math.log10(2)) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of about {digits} digits"
    return str(value)


def _check_int(name, value, lo, hi, odd=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int in [{lo}, {hi}], got {value!r:.60} ({type(value).__name__})")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {_show(value)}")
    if odd and value % 2 == 0:
        raise ValueError(f"{name} must be odd (an even footprint has no centre), got {value}")


def _check_number(name, value, lo, hi):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [{lo}, {hi}], got {value!r:.60} ({type(value).__name__})")
    # lo <= value <= hi first: math.isfinite of an int past float's range (10**400, which TOML
    # reads) raises OverflowError, while an int compares with the bounds exactly
    if not lo <= value <= hi or not math.isfinite(value):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {_show(value)}")
