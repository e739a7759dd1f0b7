"""Segmentation quality against hand-drawn instance labels: object F1, matched IoU, pixel IoU.

Usable on anyone's annotated data: `match_instances` compares two label images,
`Scores` adds them up over a data set, `evaluate_pairs` segments nucleus images
with the package's nucleus stage and scores them, `find_pairs` pairs image and
label files in two folders (``livedead-gpu evaluate IMAGES LABELS``), and `read_image`
reads label files as annotation tools and public sets save them (ids, palettes, colour
pictures, binary masks).

Matching
--------
Two instances match when their intersection over union (IoU) is at least
``iou_threshold`` (0.5 by default). Above 0.5 a matching is unique: an
object can overlap two others with IoU > 0.5 only if it were more than half of
each, so there is no choice to make (at exactly 0.5 two pairs can tie; either
gives the same counts). The pairs are taken greedily in descending IoU, one to
one, which is that matching at >= 0.5 (and a good, not necessarily optimal, one
below it). True positives are matched pairs, false
positives unmatched found objects, false negatives unmatched drawn objects.

- object F1 = 2 TP / (2 TP + FP + FN)
- mean matched IoU = mean IoU of the matched pairs (how well the found outline
  follows the drawn one, given a match)
- pixel IoU = |found foreground ∩ drawn foreground| / |union| (semantic; ignores
  instances)

Over a data set the counts and pixel sums are added before the ratios are taken
(micro average: every object weighs the same, whatever its image).

Errors, by kind (what to tune: a merge calls for a shallower split, a split for a
deeper one; see `livedead_gpu.params.SegmentParams`). Each unmatched drawn object
is one of:

- missed: no found pixel on it;
- merged: the found object covering most of it covers at least half of it and
  at least half of another drawn object;
- split: not merged, and two or more found objects cover at least a fifth of it each;
- outlined: found otherwise, but not to IoU ``iou_threshold`` (a poor outline).

Unmatched found objects over no drawn pixel are ``extra`` (debris, undrawn nuclei).
"""

from __future__ import annotations

import json
import numbers
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "Scores",
    "called_dead",
    "evaluate_pairs",
    "find_pairs",
    "iou_matrix",
    "match_instances",
    "read_image",
    "reference_dead",
    "score_calls",
    "segment_live_dead",
    "segment_nuclei",
]

#: The IoU thresholds of the Data Science Bowl 2018's score (0.5 to 0.95 by 0.05), scored
#: beside ``iou_threshold`` (`Scores.tp_at`).
IOU_STEPS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
# JPEG's lossy compression changes instance ids at objects' edges: no label file.
LOSSY_SUFFIXES = (".jpg", ".jpeg")
# Suffixes that annotation tools append to the image's name for its label file.
LABEL_TAGS = ("", "_labelled", "_labeled", "_labels", "_label", "_masks", "_mask", "_gt", "_seg", "_cp_masks")


def iou_matrix(truth, found):
    """IoU of every drawn instance with every found instance that overlaps it.

    Parameters
    ----------
    truth, found : (M, N) integer ndarrays
        Instance labels, 0 background. Ids need not be consecutive.

    Returns
    -------
    t_ids, f_ids, iou : ndarrays
        One entry per overlapping (drawn, found) pair: the two ids and their IoU
        (float64). Pairs that do not overlap have IoU 0 and are not listed.
    """
    t_ids, f_ids, inter, t_area, f_area = _overlaps(truth, found)
    return t_ids, f_ids, inter / (t_area + f_area - inter)


def _overlaps(truth, found):
    """`iou_matrix`'s pairs with their intersections and the two objects' areas (px)."""
    truth, found = _labels(truth, "truth"), _labels(found, "found")
    if truth.shape != found.shape:
        raise ValueError(f"truth has shape {truth.shape} but found has shape {found.shape}")
    t_ids, t = np.unique(truth, return_inverse=True)
    f_ids, f = np.unique(found, return_inverse=True)
    t, f = t.ravel(), f.ravel()
    nt, nf = len(t_ids), len(f_ids)
    t_area = np.bincount(t, minlength=nt)
    f_area = np.bincount(f, minlength=nf)
    both = (truth.ravel() != 0) & (found.ravel() != 0)
    # The overlapping pairs' counts, as many as there are pairs: a dense drawn x found
    # table grows with the square of the objects (20,000 nuclei: 3 GB).
    keys, inter = np.unique(t[both].astype(np.int64) * nf + f[both], return_counts=True)
    ti, fi = np.divmod(keys, nf)
    return t_ids[ti], f_ids[fi], inter, t_area[ti], f_area[fi]


def match_instances(truth, found, iou_threshold: float = 0.5) -> Scores:
    """Match drawn and found instances of one image one to one by IoU (see the module notes).

    Parameters
    ----------
    truth, found : (M, N) integer ndarrays
        Instance labels, 0 background.
    iou_threshold : float
        In (0, 1]; a pair matches when its IoU is at least this.

    Returns
    -------
    Scores
        Of this image alone (add `Scores` to pool images).
    """
    _check_iou(iou_threshold)
    truth, found = _labels(truth, "truth"), _labels(found, "found")
    pairs = _overlaps(truth, found)
    t_ids, f_ids, inter, t_area, f_area = pairs
    iou = inter / (t_area + f_area - inter)
    # One greedy pass down to IoU 0.5 as well: the pairs it takes at or above any t are the
    # matching at t (it meets them first), so it scores every threshold of IOU_STEPS too.
    keep = iou >= min(iou_threshold, IOU_STEPS[0])
    seen_t, seen_f, taken = set(), set(), []
    for i in np.flatnonzero(keep)[np.argsort(-iou[keep], kind="stable")]:
        a, b = int(t_ids[i]), int(f_ids[i])
        if a not in seen_t and b not in seen_f:
            seen_t.add(a)
            seen_f.add(b)
            taken.append((float(iou[i]), a))
    matched = [v for v, _ in taken if v >= iou_threshold]
    used_t = {a for v, a in taken if v >= iou_threshold}
    drawn = np.unique(truth)
    drawn = drawn[drawn != 0]
    n_found = len(np.unique(found)) - (found == 0).any()
    t_fg, f_fg = truth != 0, found != 0
    missed, merged, split = _errors(drawn, pairs, used_t)
    return Scores(
        tp=len(matched),
        fp=int(n_found - len(matched)),
        fn=int(len(drawn) - len(matched)),
        iou_sum=float(sum(matched)),
        pixel_inter=int(np.count_nonzero(t_fg & f_fg)),
        pixel_union=int(np.count_nonzero(t_fg | f_fg)),
        images=1,
        missed=missed,
        merged=merged,
        split=split,
        extra=int(n_found - len(np.unique(f_ids))),
        tp_at=tuple(sum(v >= t for v, _ in taken) for t in IOU_STEPS),
    )


def _errors(drawn, pairs, used):
    """How many unmatched drawn objects were missed, merged and split (see the module notes)."""
    t_ids, f_ids, inter, t_area, _ = pairs
    cover = inter / t_area  # the share of the drawn object each found one covers
    # Found objects covering at least half of two or more drawn ones: merges.
    halves = np.unique(f_ids[cover >= 0.5], return_counts=True)
    merging = set(halves[0][halves[1] >= 2].tolist())
    missed = merged = split = 0
    order = np.argsort(t_ids, kind="stable")
    t_ids, f_ids, cover = t_ids[order], f_ids[order], cover[order]
    starts = np.searchsorted(t_ids, drawn)
    stops = np.searchsorted(t_ids, drawn, side="right")
    for a, lo, hi in zip(drawn.tolist(), starts, stops):
        if a in used:
            continue
        if lo == hi:
            missed += 1
            continue
        best = lo + int(np.argmax(cover[lo:hi]))
        if cover[best] >= 0.5 and int(f_ids[best]) in merging:
            merged += 1
        elif np.count_nonzero(cover[lo:hi] >= 0.2) >= 2:
            split += 1
    return missed, merged, split


@dataclass
class Scores:
    """Counts of a matching, for one image or pooled over many (``a + b``).

    Attributes
    ----------
    tp, fp, fn : int
        Matched pairs, unmatched found objects, unmatched drawn objects.
    missed, merged, split : int
        Unmatched drawn objects by kind (module notes); the rest of ``fn`` were
        outlined poorly (`outlined`).
    extra : int
        Unmatched found objects over no drawn pixel.
    calls, calls_right, drawn_dead : int
        With a dead stain (`score_calls`): drawn nuclei given a live/dead call, those
        called as the reference calls them, and those dead by the reference.
    tp_at : tuple of int
        Matched pairs at each IoU threshold of `IOU_STEPS` (whatever ``iou_threshold``).
    iou_sum : float
        Sum of the matched pairs' IoU.
    pixel_inter, pixel_union : int
        Foreground pixels found and drawn, and found or drawn.
    images : int
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    iou_sum: float = 0.0
    pixel_inter: int = 0
    pixel_union: int = 0
    images: int = 0
    missed: int = 0
    merged: int = 0
    split: int = 0
    extra: int = 0
    calls: int = 0
    calls_right: int = 0
    drawn_dead: int = 0
    tp_at: tuple = (0,) * len(IOU_STEPS)
    per_image: dict = field(default_factory=dict, repr=False, compare=False)

    def __radd__(self, other):
        # sum(scores) starts from 0
        return self if isinstance(other, int) and other == 0 else NotImplemented

    def __add__(self, other: Scores) -> Scores:
        if not isinstance(other, Scores):
            return NotImplemented
        return Scores(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.iou_sum + other.iou_sum,
            self.pixel_inter + other.pixel_inter, self.pixel_union + other.pixel_union,
            self.images + other.images, self.missed + other.missed, self.merged + other.merged,
            self.split + other.split, self.extra + other.extra, self.calls + other.calls,
            self.calls_right + other.calls_right, self.drawn_dead + other.drawn_dead,
            tuple(a + b for a, b in zip(self.tp_at, other.tp_at)), {**self.per_image, **other.per_image},
        )

    @property
    def outlined(self) -> int:
        """Unmatched drawn objects found but outlined poorly (neither missed, merged nor split)."""
        return self.fn - self.missed - self.merged - self.split

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Object F1; 1.0 when there is nothing to find and nothing was found."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (0 when none matched)."""
        return self.iou_sum / self.tp if self.tp else 0.0

    @property
    def pixel_iou(self) -> float:
        return self.pixel_inter / self.pixel_union if self.pixel_union else 1.0

    def f1_at(self, t: float) -> float:
        """Object F1 at IoU threshold ``t`` of `IOU_STEPS`."""
        tp = self.tp_at[IOU_STEPS.index(round(t, 2))]
        denom = (self.tp + self.fn) + (self.tp + self.fp)
        return 2 * tp / denom if denom else 1.0

    @property
    def mean_ap(self) -> float:
        """TP / (TP + FP + FN) averaged over the IoU thresholds of `IOU_STEPS` (the Data Science Bowl
        2018's score, here of the counts pooled over the images rather than averaged by image)."""
        drawn, found = self.tp + self.fn, self.tp + self.fp
        return float(np.mean([tp / (drawn + found - tp) if drawn + found - tp else 1.0 for tp in self.tp_at]))

    @property
    def live_dead_right(self) -> float | None:
        """The share of drawn nuclei called live or dead as the reference calls them; None
        without calls (no dead stain given, or no drawn nucleus)."""
        return self.calls_right / self.calls if self.calls else None

    def as_dict(self) -> dict:
        return {
            "images": self.images, "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": round(self.precision, 6), "recall": round(self.recall, 6), "f1": round(self.f1, 6),
            "mean_matched_iou": round(self.mean_iou, 6), "pixel_iou": round(self.pixel_iou, 6),
            "missed": self.missed, "merged": self.merged, "split": self.split, "outlined": self.outlined,
            "extra": self.extra,
            "f1_at_iou": {f"{t:.2f}": round(self.f1_at(t), 6) for t in IOU_STEPS},
            "mean_ap_0.5_0.95": round(self.mean_ap, 6),
            **({"calls": self.calls, "calls_right": self.calls_right, "drawn_dead": self.drawn_dead,
                "live_dead_right": round(self.live_dead_right, 6)} if self.calls else {}),
        }


def _check_iou(iou_threshold):
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real) \
            or not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be a number in (0, 1], got {iou_threshold!r}")


def _labels(a, name):
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D label image, got shape {a.shape}")
    if a.dtype.kind == "b":
        raise TypeError(f"{name} is a bool mask; label its instances first (one id per object)")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer instance labels, got dtype {a.dtype}")
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {a.min()}); expected 0 for background and "
                         "1, 2, ... for objects (set ignored regions to 0)")
    return a


# -- live/dead --------------------------------------------------------------------------


def reference_dead(labels, stain, ratio: float = 3.0) -> np.ndarray:
    """The reference call of each drawn nucleus: dead when its mean dead-stain intensity exceeds
    ``ratio`` times the stain's median outside every drawn nucleus.

    The rule issue 4 sets for the ADCC set ("mean PI above 3x the field's background"), and
    independent of the package's own call (which compares each nucleus with a local background
    and takes the Hoechst bleed-through off first).

    Parameters
    ----------
    labels : (M, N) int array, drawn instance ids
    stain : (M, N) array, the dead-nucleus stain (Draq7, PI)
    ratio : float

    Returns
    -------
    (labels.max() + 1,) bool array, indexed by id (entry 0 and ids not drawn False)
    """
    labels, stain = np.asarray(labels), np.asarray(stain)
    if stain.shape != labels.shape:
        raise ValueError(f"stain has shape {stain.shape}, labels {labels.shape}; expected one shape")
    outside = stain[labels == 0]
    if outside.size == 0:
        raise ValueError("labels cover the whole image: no background to compare the dead stain with")
    n = int(labels.max()) + 1
    area = np.bincount(labels.ravel(), minlength=n)
    mean = np.bincount(labels.ravel(), weights=stain.ravel().astype(np.float64), minlength=n) / np.maximum(area, 1)
    dead = (mean > ratio * float(np.median(outside))) & (area > 0)
    dead[0] = False
    return dead


def called_dead(labels, found, found_dead) -> np.ndarray:
    """The package's call of each drawn nucleus: that of the found nucleus covering most of it,
    live when none covers any of it.

    Returns
    -------
    (labels.max() + 1,) bool array, indexed by drawn id
    """
    labels, found = np.asarray(labels), np.asarray(found)
    found_dead = np.asarray(found_dead, bool)
    out = np.zeros(int(labels.max()) + 1, bool)
    inside = labels > 0
    pairs, counts = np.unique(np.stack([labels[inside], found[inside]]), axis=1, return_counts=True)
    keep = pairs[1] > 0
    pairs, counts = pairs[:, keep], counts[keep]
    # for each drawn id the found id of the largest overlap (ties: the lower found id, as argmax)
    order = np.lexsort((pairs[1], -counts, pairs[0]))
    first = np.unique(pairs[0, order], return_index=True)[1]
    best = pairs[:, order[first]]
    out[best[0]] = found_dead[best[1]]
    return out


def score_calls(labels, stain, found, found_dead, ratio: float = 3.0) -> Scores:
    """Scores holding only the live/dead counts of one image (add it to its `match_instances`):
    each drawn nucleus called by `called_dead` against `reference_dead`."""
    labels = _labels(labels, "labels")
    truth, call = reference_dead(labels, stain, ratio), called_dead(labels, found, found_dead)
    drawn = np.bincount(labels.ravel(), minlength=len(truth)) > 0
    drawn[0] = False
    return Scores(calls=int(drawn.sum()), calls_right=int((truth == call)[drawn].sum()),
                  drawn_dead=int(truth[drawn].sum()))


# -- files --------------------------------------------------------------------------


def read_image(path, channel=None, labels: bool = False) -> np.ndarray:
    """Read one 2-D image (TIFF with tifffile, others with OpenCV, unchanged depth).

    Parameters
    ----------
    path : path
    channel : int, str or None
        For a multi-channel image: the channel index (in R, G, B order for colour
        pictures, whatever their format), or a channel name looked up
        in the ``"channels"`` list of a JSON file beside the image (``<stem>.json``,
        the celldetective convention). ``None`` takes an RGB image's first channel
        when all three are equal (a grey image saved as RGB) and refuses other
        multi-channel images.
        The channel axis is the shortest one ((C, M, N) or (M, N, C)).
    labels : bool
        Read a label image as one (M, N) plane of instance ids (0 background), in
        which every instance is one 8-connected object: an id (or a colour) on
        several separate objects gives each its own id (`_objects`). A palette
        (indexed-colour) PNG gives its indices; a colour-coded picture (RGB(A),
        black or transparent background) its colours, each an instance, where
        colours are reused for objects that do not touch (BBBC039's masks). Grey ids
        saved as RGB are read as grey. A binary mask, or ids reused on separate
        objects in a grey image, are read as their objects with a `UserWarning`:
        touching objects of one value count as one. Float ids (Fiji's 32-bit label
        images) are read when they are whole numbers. Multi-plane files are refused.
        A folder is read as one binary mask a nucleus (`_mask_folder`).
    """
    path = Path(path)
    if labels and path.is_dir():
        return _mask_folder(path)
    try:
        image, palette = _read(path, labels)
    except OSError:
        raise
    except Exception as e:  # a damaged file: tifffile and OpenCV raise all kinds
        raise ValueError(f"cannot read {str(path)!r}: {e}") from None
    if image.size == 0:
        raise ValueError(f"cannot read {str(path)!r}: it holds no pixels (shape {image.shape})")
    image = np.squeeze(image)
    if labels:
        coded = palette
        if image.ndim == 3 and min(image.shape) in (3, 4):
            planes = np.moveaxis(image, int(np.argmin(image.shape)), 0)
            if all((p == planes[0]).all() for p in planes[1:3]):   # grey ids saved as RGB(A)
                image = planes[0]
            else:
                image, coded = _colour_ids(planes, path), True
        if image.ndim != 2:
            raise ValueError(
                f"label image {str(path)!r} has shape {image.shape}; expected one 2-D plane of instance ids, "
                "or an RGB(A) picture of them (multi-plane labels are not read)"
            )
        if image.dtype.kind == "f":   # Fiji's 32-bit label images: whole numbers as floats
            whole = np.isfinite(image).all() and (image == np.round(image)).all()
            if not whole or image.min() < 0 or image.max() > np.iinfo(np.int32).max:
                raise ValueError(f"label image {str(path)!r} holds {image.dtype} values that are not ids (0 "
                                 f"and whole numbers up to 2**31 - 1; range {np.nanmin(image)}..{np.nanmax(image)})")
            image = image.astype(np.int32)
        return _objects(image, path, warn=not coded)
    if image.ndim == 2:
        if channel not in (None, 0, "0") and not isinstance(channel, str):
            raise ValueError(f"channel {channel!r} given, but {str(path)!r} is a one-channel 2-D image")
        return image
    if image.ndim != 3:
        raise ValueError(f"{str(path)!r} has shape {image.shape}; expected a 2-D image or a channel stack")
    axis = int(np.argmin(image.shape))  # the channel axis is the short one
    if isinstance(channel, str):
        meta = path.with_suffix(".json")
        try:
            names = json.loads(meta.read_text())["channels"]
        except (OSError, KeyError, ValueError):
            raise ValueError(
                f"channel {channel!r} is a name, but {str(meta)!r} lists no \"channels\"; give an index"
            ) from None
        if channel not in names:
            raise ValueError(f"channel {channel!r} is not in {str(meta)!r}: {names}")
        channel = names.index(channel)
    if channel is None:
        planes = np.moveaxis(image, axis, 0)
        if len(planes) in (3, 4) and all((p == planes[0]).all() for p in planes[1:3]):
            return planes[0]
        raise ValueError(f"{str(path)!r} has {image.shape[axis]} planes (channels, or z or time points) of shape "
                         f"{np.delete(image.shape, axis).tolist()}; choose one (channel=, --channel on the "
                         "command line)")
    if not -image.shape[axis] <= channel < image.shape[axis]:
        raise ValueError(f"channel {channel} is out of range for {str(path)!r} ({image.shape[axis]} channels)")
    return np.take(image, channel, axis=axis)


def _read(path, labels):
    """The file's pixels, and whether they are a palette PNG's indices."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path), False
    if not path.is_file():
        raise FileNotFoundError(f"no image file {str(path)!r}")
    if labels and path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as im:
            if im.mode == "P":  # OpenCV would expand the palette into colours
                return np.asarray(im), True
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("OpenCV cannot decode it")
    if image.ndim == 3 and image.shape[2] in (3, 4):  # OpenCV's BGR(A): R, G, B as tifffile reads
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
    return image, False


def _colour_ids(planes, path):
    """(3 or 4, M, N) R, G, B(, A) planes of a colour-coded label picture -> (M, N) int64
    ids, one per colour, 0 where black or transparent."""
    if planes.dtype.kind not in "iu":
        raise ValueError(f"label image {str(path)!r} holds {planes.dtype} colours; expected integer RGB(A)")
    r, g, b = (p.astype(np.uint64) for p in planes[:3])
    key = (r << np.uint64(32)) | (g << np.uint64(16)) | b    # 16 bits a channel at most (PNG, TIFF)
    if len(planes) == 4:
        key[planes[3] == 0] = 0
    colours = np.unique(key)   # a sort: 5x quicker than return_inverse's argsort
    if colours[0] != 0:
        raise ValueError(f"label image {str(path)!r} is a colour picture with no black (or transparent) pixel; "
                         "expected colour-coded instances on a black background")
    return np.searchsorted(colours, key)


def _mask_folder(folder):
    """A folder of binary masks, one nucleus a file (the Data Science Bowl 2018's ``masks/``)
    -> (M, N) int32 ids 1..n in the files' natural order. A file's nonzero pixels are its
    nucleus, in one piece or several; masks that overlap are an error naming both."""
    paths = _files(folder)
    if not paths:
        raise ValueError(f"label folder {str(folder)!r} holds no image file; expected one binary mask a nucleus")
    out = None
    for k, path in enumerate(paths, 1):
        if path.suffix.lower() in LOSSY_SUFFIXES:
            raise ValueError(f"mask file {str(path)!r} is a JPEG, whose lossy compression puts noise around the "
                             "object; save masks as PNG or TIFF")
        mask = read_image(path) != 0
        if out is None:
            out = np.zeros(mask.shape, np.int32)
        if mask.shape != out.shape:
            raise ValueError(f"mask file {str(path)!r} has shape {mask.shape}, {paths[0].name!r} beside it "
                             f"{out.shape}; expected one shape in {str(folder)!r}")
        under = out[mask]
        if under.any():
            other = paths[int(under[under > 0][0]) - 1]
            raise ValueError(f"mask files {str(other)!r} and {path.name!r} overlap ({int((under > 0).sum())} px); "
                             "expected one nucleus a pixel")
        out[mask] = k
    return out


def _objects(ids, path, warn=True):
    """``ids`` with every id that lies on several separate (8-connected) objects split: the
    first object keeps it, the others get new ids above the largest. ``ids`` itself when no id
    is split (a label image as annotation tools save one).

    Colour-coded pictures and palettes reuse a colour for objects that do not touch; in a grey
    image one value on many objects is a binary mask, ids reused otherwise a tool's wrap-around
    (8-bit ids): both warned of with ``warn``, touching objects of one value counting as one.
    Hand-drawn labels hold no id in two pieces (none of the 1,629 of Coelho's and ADCC's).
    """
    if ids.dtype.kind == "b":   # a 1-bit TIFF: a binary mask, whatever its objects
        ids = ids.astype(np.uint8)
    if ids.dtype.kind not in "iu" or ids.size == 0 or ids.min() < 0:
        return ids   # refused by match_instances, naming the file
    import cv2
    from scipy import ndimage as ndi

    top = int(ids.max())
    if top <= 4 * ids.size:
        compact, values = ids.astype(np.intp, copy=False), None   # find_objects lists 1..top
    else:   # sparse large ids: number them 1..n first
        values = np.unique(ids)
        compact = np.searchsorted(values, ids) + int(values[0] != 0)
        values = np.concatenate([[0], values]) if values[0] != 0 else values
    out, split = None, {}
    for k, box in enumerate(ndi.find_objects(compact), 1):
        if box is None:
            continue
        n, pieces = cv2.connectedComponents(np.uint8(compact[box] == k), connectivity=8, ltype=cv2.CV_32S)
        if n <= 2:
            continue
        if out is None:
            out = ids.astype(np.int64)
        sub = out[box]
        for j in range(2, n):
            top += 1
            sub[pieces == j] = top
        split[k if values is None else int(values[k])] = n - 1
    if out is None:
        return ids
    n_ids = len(np.unique(ids)) - 1 if warn else 0
    if n_ids == 1:
        (value, n), = split.items()
        warnings.warn(f"label file {str(path)!r} holds one value ({value}) on {n} separate objects: read as a binary "
                      "mask, each connected object one nucleus (touching nuclei count as one); instance labels "
                      "(1, 2, ... per nucleus) score them truly", UserWarning, stacklevel=3)
    elif n_ids:
        some = ", ".join(f"{k} on {n}" for k, n in list(split.items())[:3])
        warnings.warn(f"label file {str(path)!r} holds ids on several separate objects (of {n_ids} ids, "
                      f"{len(split)}: {some}{', ...' * (len(split) > 3)}): each connected object read as one "
                      "nucleus (objects of one id that touch count as one)", UserWarning, stacklevel=3)
    return out.astype(np.int32) if top <= np.iinfo(np.int32).max else out


def find_pairs(images, labels) -> list[tuple[Path, Path]]:
    """Pair each image in folder ``images`` with its label file in folder ``labels``.

    A label file belongs to image ``<stem>.<ext>`` when its stem is ``<stem>`` or
    ``<stem>`` plus one of ``_labelled``, ``_labels``, ``_mask(s)``, ``_gt``, ...
    (see `LABEL_TAGS`), in any case, an OME-TIFF's ``.ome`` left out. ``labels``
    may be ``images`` (label files beside their images): a file is never its own
    label file. Hidden files (``.name``, e.g. macOS's ``._name``) are skipped.
    Images without a label file are skipped with a warning that names them, as
    are label files no image pairs with; no pair at all is an error.

    A label "file" may also be a folder of that name holding one binary mask a
    nucleus (``labels/a/*.png``; beside the images ``a/`` itself). ``images`` may be
    a folder of samples, ``<id>/images/<image>`` and ``<id>/masks/*.png`` (the Data
    Science Bowl 2018's layout); give it as ``labels`` too.

    Raises
    ------
    ValueError
        No pair; an image with two label files (``a_labels.tif`` and
        ``a_mask.tif``); a label file two images pair with (``a.tif`` and
        ``a.png``); a JPEG label file (lossy compression changes the ids); a
        sample with several images.

    Returns
    -------
    list of (image path, label path)
        Sorted by image name.
    """
    images, labels = Path(images), Path(labels)
    for name, folder in (("images", images), ("labels", labels)):
        if folder.is_file():
            raise NotADirectoryError(f"{name} {str(folder)!r} is a file; expected a folder of {name}")
        if not folder.is_dir():
            raise FileNotFoundError(f"{name} folder {str(folder)!r} does not exist")

    beside = images.resolve() == labels.resolve()
    tree = _sample_tree(images, labels)
    if tree is not None:
        return tree
    by_stem = {}
    for p in _files(labels) + _mask_folders(labels):
        by_stem.setdefault(_stem(p), []).append(p)
    tags = LABEL_TAGS[1:] if beside else LABEL_TAGS
    pairs, unpaired = {}, []
    for image in _files(images):
        # Beside their images, a file of the image's very stem (a.tif beside a.png) could be
        # either role: only tagged names (a_labels.tif) are label files there, or a folder.
        found = [p for tag in tags for p in by_stem.get(_stem(image) + tag, []) if p.resolve() != image.resolve()]
        if beside:
            found += [p for p in by_stem.get(_stem(image), []) if p.is_dir()]
        same = [p for p in by_stem.get(_stem(image), []) if p.resolve() != image.resolve() and p.is_file()] \
            if beside else []
        if same and not found:
            names = ", ".join(repr(p.name) for p in sorted(same + [image]))
            raise ValueError(
                f"{names} in {str(labels)!r} share the name {_stem(image)!r}: which holds the labels of "
                f"{str(image)!r}? Name the label file {image.stem}_labels<ext> or keep labels in a folder of "
                "their own"
            )
        if len(found) > 1:
            names = ", ".join(repr(p.name) for p in found)
            raise ValueError(
                f"{names} in {str(labels)!r} could each be the labels of {str(image)!r}; keep one, or keep "
                "labels in a folder of their own"
            )
        if not found:
            unpaired.append(image)
            continue
        label = found[0]
        if label.suffix.lower() in LOSSY_SUFFIXES:
            raise ValueError(f"label file {str(label)!r} is a JPEG, whose lossy compression changes instance ids "
                             "at the objects' edges; save labels as TIFF or PNG")
        if label in pairs:
            raise ValueError(f"{str(pairs[label])!r} and {str(image)!r} both pair with the label file "
                             f"{str(label)!r}: one image in two formats? Keep one")
        pairs[label] = image
    if not pairs:
        def some(paths):
            names = [p.name for p in paths]
            return ", ".join(names[:4]) + (f" ... ({len(names)} files)" if len(names) > 4 else "") or "no image files"

        raise ValueError(
            f"no image in {str(images)!r} has a label file in {str(labels)!r}: images {some(_files(images))}; "
            f"labels {some(_files(labels))}; a label file is named as its image, or with one of "
            f"{', '.join(t for t in LABEL_TAGS if t)} added (e.g. {_stem(next(iter(_files(images)), Path('a.tif')))}"
            "_labels.tif)"
        )
    # Beside their images, the label files are among the "images" no label file pairs with.
    unpaired = [p for p in unpaired if p not in pairs]
    if unpaired:
        warnings.warn(f"not scored, no label file in {str(labels)!r}: {_listing(unpaired)} in {str(images)!r}",
                      UserWarning, stacklevel=2)
    unused = [p for p in _files(labels) if p not in pairs] if not beside else []
    if unused:
        warnings.warn(f"not read, no image in {str(images)!r}: {_listing(unused)} in {str(labels)!r}",
                      UserWarning, stacklevel=2)
    return sorted(((image, label) for label, image in pairs.items()), key=lambda p: _natural(p[0].name))


def _files(folder):
    """The image files in ``folder`` (not hidden), in natural order."""
    return [p for p in sorted(Path(folder).iterdir(), key=lambda p: _natural(p.name))
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]


def _mask_folders(folder):
    """The subfolders of ``folder`` that hold image files: one binary mask a nucleus each."""
    return [p for p in sorted(Path(folder).iterdir(), key=lambda p: _natural(p.name))
            if p.is_dir() and not p.name.startswith(".") and _files(p)]


def _sample_tree(root, labels):
    """Pairs of a folder of samples, ``<id>/images/<one image>`` and ``<id>/masks/`` (one binary
    mask a nucleus; the Data Science Bowl 2018's layout), or None when ``root`` is no such folder
    (it holds image files, or no ``<id>/images/``). Samples without masks are skipped with a warning."""
    root = Path(root)
    samples = [d for d in sorted(root.iterdir(), key=lambda p: _natural(p.name))
               if d.is_dir() and not d.name.startswith(".") and (d / "images").is_dir()]
    if not samples or _files(root):
        return None
    if root.resolve() != Path(labels).resolve():
        raise ValueError(f"images {str(root)!r} is a folder of samples (<id>/images/, <id>/masks/, as the "
                         f"Data Science Bowl 2018's); give it as the labels folder too, got {str(labels)!r}")
    pairs, unpaired = [], []
    for d in samples:
        found = _files(d / "images")
        if len(found) != 1:
            raise ValueError(f"sample folder {str(d / 'images')!r} holds {len(found)} image files "
                             f"({', '.join(p.name for p in found[:4]) or 'none'}); expected one")
        if (d / "masks").is_dir():
            pairs.append((found[0], d / "masks"))
        else:
            unpaired.append(found[0])
    if unpaired:
        warnings.warn(f"not scored, no masks/ folder beside their images/: {_listing(unpaired)} in {str(root)!r}",
                      UserWarning, stacklevel=3)
    if not pairs:
        raise ValueError(f"no sample in {str(root)!r} has a masks/ folder beside its images/")
    return pairs


def _stem(path):
    """The name pairing goes by: without the extension (and an OME-TIFF's ``.ome``), in lower case."""
    stem = Path(path).stem.lower()
    return stem[:-4] if stem.endswith(".ome") else stem


def _listing(paths):
    names = [p.name for p in paths]
    return f"{len(names)} file{'s' * (len(names) > 1)} ({', '.join(names[:5])}{', ...' * (len(names) > 5)})"


def _natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name.lower())]


def _field(images, p, be):
    """The named host images cut inside whole margins of 0 that all share (`checks.inside_padding`),
    that box (or None), and the padding of the line kept of them on the device (or None), as
    `segment_frame` sets alignment padding aside. Stains alone tell no other padding from a
    background clipped to 0 (`stages.frame_padding`), so only whole zero edge lines count."""
    from .checks import EDGES, inside_padding
    from .stages.gradient import padding_of

    inside, box = inside_padding(images, p.coarseness)
    zero = np.logical_and.reduce([image == 0 for image in inside.values()])
    if not any(zero[edge].all() for edge in EDGES):
        return inside, box, None
    return inside, box, padding_of(be.to_device(zero.all(axis=1)[:, None] | zero.all(axis=0)[None, :]), be)


def _whole(labels, shape, box, be):
    """Device labels of the box -> host (M, N) int32 labels of the whole image."""
    if box is None:
        return be.to_host(labels)
    whole = np.zeros(shape, np.int32)
    whole[box] = be.to_host(labels)
    return whole


def segment_nuclei(image, params=None, backend="cpu") -> np.ndarray:
    """Nucleus instance labels of one nuclear-stain image, as the pipeline finds them.

    The nucleus stage alone: the nucleus mask (`stages.nucleus_mask`), then its
    labels, touching nuclei split with ``params.split_nuclei`` (`stages.split_nuclei`),
    so the labels are those `segment_frame` gives a Hoechst channel (less the
    Draq7-bright seeds, there being no dead stain here). Returns a host (M, N)
    int32 array.
    """
    from .backends import get_backend
    from .checks import as_intensity
    from .params import as_params
    from .stages.nuclei import _nucleus_mask, split_nuclei

    p = as_params(params)
    be = get_backend(backend)
    image = as_intensity(image, "image", min_side=2)
    inside, box, padding = _field({"image": image}, p, be)
    mask, _, diameter, *_ = _nucleus_mask(be.to_device(inside["image"]), p, be, padding=padding)
    labels, _ = split_nuclei(mask, diameter, p, be) if p.split_nuclei else be.label(mask)
    return _whole(labels, image.shape, box, be)


def segment_live_dead(hoechst, dead, params=None, backend="cpu"):
    """Nucleus labels and live/dead calls of one field from its two stains.

    The nucleus stage of `segment_frame` (`stages.find_nuclei`: the Hoechst mask, the
    dead stain's bright regions as nuclei of their own, each nucleus called by its
    dead stain over the local background) without a brightfield.

    Parameters
    ----------
    hoechst, dead : (M, N) uint8 or uint16 arrays
        The all-nuclei stain and the dead-nucleus stain (Draq7, PI).

    Returns
    -------
    labels : (M, N) int32 host array
    dead : (labels.max() + 1,) bool host array
    """
    from .backends import get_backend
    from .checks import as_intensity, check_same_shape
    from .params import as_params
    from .stages.nuclei import find_nuclei

    p = as_params(params)
    be = get_backend(backend)
    hoechst, dead = as_intensity(hoechst, "hoechst", min_side=2), as_intensity(dead, "dead", min_side=2)
    check_same_shape(hoechst=hoechst, dead=dead)
    inside, box, padding = _field({"hoechst": hoechst, "dead": dead}, p, be)
    nuc, *_ = find_nuclei(be.to_device(inside["hoechst"]), be.to_device(inside["dead"]), p, be, padding=padding)
    return _whole(nuc.labels, hoechst.shape, box, be), be.to_host(nuc.dead)


def evaluate_pairs(pairs, params=None, channel=None, iou_threshold=0.5, backend="cpu", dead_channel=None,
                   reference_ratio: float = 3.0) -> Scores:
    """Segment the nuclei of each image and score them against its labels.

    Parameters
    ----------
    pairs : iterable of (image path, label path)
    params : SegmentParams, optional
    channel : int, str or None
        The nuclear stain's channel; see `read_image`.
    dead_channel : int, str or None
        The dead-nucleus stain's channel of the same files (Draq7, PI): the nuclei are
        then found and called live or dead as `segment_frame` finds and calls them
        (`segment_live_dead`), and each drawn nucleus' call is scored against
        `reference_dead` (``calls``, ``calls_right``, ``drawn_dead``).
    reference_ratio : float
        The reference's ratio of a dead nucleus' mean stain to the stain's median
        outside the drawn nuclei.

    Returns
    -------
    Scores
        Pooled over the pairs; ``per_image`` maps each image's name (its path where
        an earlier image has that name) to its own.
    """
    _check_iou(iou_threshold)
    if isinstance(reference_ratio, bool) or not isinstance(reference_ratio, numbers.Real) \
            or not reference_ratio > 0:
        raise ValueError(f"reference_ratio must be a number > 0, got {reference_ratio!r}")
    total = Scores()
    for image_path, label_path in pairs:
        truth = read_image(label_path, labels=True)
        image = read_image(image_path, channel)
        stain = None if dead_channel is None else read_image(image_path, dead_channel)
        if image.shape != truth.shape:
            raise ValueError(f"label file {str(label_path)!r} has shape {truth.shape}, its image "
                             f"{str(image_path)!r} {image.shape}; expected one label per pixel")
        try:
            if stain is None:
                found = segment_nuclei(image, params, backend)
            else:
                found, found_dead = segment_live_dead(image, stain, params, backend)
        except (TypeError, ValueError) as e:  # a float image, NaNs ...
            raise type(e)(f"{str(image_path)!r}: {e}") from None
        try:
            s = match_instances(truth, found, iou_threshold)
            if stain is not None:
                s = s + score_calls(truth, stain, found, found_dead, reference_ratio)
        except (TypeError, ValueError) as e:  # a label file of another shape, a bool mask ...
            raise type(e)(f"{str(label_path)!r} (labels of {str(image_path)!r}): {e}") from None
        name = Path(image_path).name
        # Two folders' images of one name (gnf/dna-0.png, ic100/dna-0.png) each keep a row.
        s.per_image = {str(image_path) if name in total.per_image else name: s.as_dict()}
        total = total + s
    return total
