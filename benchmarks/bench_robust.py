"""Nucleus label quality when the Coelho images change as other microscopes would change them.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_robust.py [--data ../shared/data] [CASE ...]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_robust.py --adcc [--data ../shared/data]

Each case transforms the 29 Coelho Hoechst images (8-bit) and their labels the same way: rescaled
(another magnification), stored in 16 bits (shifted by 4 bits as 12-bit cameras do, scaled by 257
as ``skimage.img_as_uint`` does, with a camera offset), with camera noise added, out of focus,
vignetted or lit by a ramp, shifted onto a registration's zero margin or rotated. The default parameters
segment each; the object F1 at IoU 0.5 and the mean matched IoU are pooled over the images. No
parameter is tuned per case.

``--adcc``: the eight ADCC fields' Hoechst with white noise of 0-20 % of each field's nucleus
contrast (its 99th percentile over its median) added; nucleus F1 and the live/dead call of the
drawn nuclei (`bench_quality.py`'s), unsmoothed (``nucleus_smoothing = 0``) against the default
``"auto"``, and how many fields "auto" smoothed.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from livedead_gpu import segment_frame
from livedead_gpu.evaluate import Scores, find_pairs, match_instances, read_image, segment_nuclei

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rescale(factor):
    def t(image, labels, rng):
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        area = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image.astype(np.float32), size, interpolation=area)
        labels = cv2.resize(labels.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels.astype(np.int32)
    return t


def sixteen(gain, offset=0.0, noise=0.0):
    """``image * gain + offset`` plus white noise of s.d. ``noise``, as uint16."""
    def t(image, labels, rng):
        out = image * float(gain) + offset
        if noise:
            out = out + rng.normal(0.0, noise, image.shape)
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16), labels
    return t


def defocus(sigma):
    """A Gaussian blur of ``sigma`` px (focus drift over a long movie), the labels kept."""
    def t(image, labels, rng):
        out = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8), labels
    return t


def lit(kind, strength):
    """A vignette (centre to corner: 1 -> 1 - strength) or a ramp adding ``strength`` of the maximum left to right."""
    def t(image, labels, rng):
        h, w = image.shape
        yy, xx = np.mgrid[:h, :w]
        if kind == "vignette":
            out = image * (1 - strength * (((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2) / 2)
        else:
            out = image + strength * float(image.max()) * xx / w
        return np.clip(np.rint(out), 0, 65535).astype(np.uint16), labels
    return t


def margin(top, left):
    """Shifted by ``(top, left)`` px onto zeros, as a registration pads a frame (the labels shifted alike)."""
    def t(image, labels, rng):
        h, w = image.shape
        out, moved = np.zeros_like(image), np.zeros_like(labels)
        out[top:, left:] = image[: h - top, : w - left]
        moved[top:, left:] = labels[: h - top, : w - left]
        return out, moved
    return t


def rotated(degrees):
    """Rotated about the centre (bilinear; the labels nearest), the corners 0, as a rigid registration
    pads a frame. Segmented as a frame (`segment_frame`, beside a flat brightfield and Draq7 rotated
    alike): a stain alone tells no padding from a background clipped to 0."""
    def t(image, labels, rng):
        h, w = image.shape
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
        return (cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR),
                cv2.warpAffine(labels.astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST).astype(np.int32))
    t.frame = True
    return t


CASES = {
    "as is": lambda image, labels, rng: (image, labels),
    "0.5x size": rescale(0.5),
    "0.75x size": rescale(0.75),
    "1.5x size": rescale(1.5),
    "16-bit, x16": sixteen(16),
    "16-bit, x16 + 1000": sixteen(16, 1000),
    "16-bit, x257": sixteen(257),
    "16-bit, x4 + 200, noise 10": sixteen(4, 200, 10),
    "16-bit, x4 + 200, noise 20": sixteen(4, 200, 20),
    "16-bit, x4 + 200, noise 40": sixteen(4, 200, 40),
    "16-bit, x4 + 200, noise 60": sixteen(4, 200, 60),
    "16-bit, x4.8 + 100, noise 3": sixteen(4.8, 100, 3),
    "defocus 2 px": defocus(2),
    "defocus 4 px": defocus(4),
    "defocus 8 px": defocus(8),
    "vignette 0.5": lit("vignette", 0.5),
    "ramp 0.3": lit("ramp", 0.3),
    "zero margin 60/90": margin(60, 90),
    "rotated 7 deg, as a frame": rotated(7),
}


def adcc_noise(root, shares=(0.0, 0.05, 0.1, 0.2)):
    """The ``--adcc`` table: ``{share: {"0" | "auto": (Scores, live/dead correct), "smoothed": n}}``."""
    from bench_quality import adcc_fields, field_nuclei

    from livedead_gpu import SegmentParams
    from livedead_gpu.evaluate import score_calls

    fields = list(adcc_fields(root))
    print(f"{len(fields)} ADCC fields, Hoechst + white noise (share of the nucleus contrast): "
          "F1 / live-dead correct, unsmoothed -> \"auto\"")
    out = {}
    for share in shares:
        rng = np.random.default_rng(0)
        row = {"0": Scores(), "auto": Scores(), "smoothed": 0}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _, hoechst, pi, labels, px, brightfield in fields:
                contrast = float(np.percentile(hoechst, 99) - np.median(hoechst))
                noisy = np.clip(np.rint(hoechst + rng.normal(0, share * contrast, hoechst.shape)), 0, 65535)
                noisy[(brightfield == 0) & (hoechst == 0)] = 0   # the alignment padding stays 0
                for key, smoothing in (("0", 0.0), ("auto", "auto")):
                    p = SegmentParams(nucleus_smoothing=smoothing, pixel_size=px)
                    nuc, _, _, thresholds = field_nuclei(brightfield, noisy.astype(hoechst.dtype), pi, p)
                    row[key] = row[key] + match_instances(labels, nuc.labels) + score_calls(labels, pi, nuc.labels,
                                                                                            nuc.dead)
                    row["smoothed"] += key == "auto" and thresholds[2] > 0
        out[share] = {"0": (row["0"], row["0"].live_dead_right),
                      "auto": (row["auto"], row["auto"].live_dead_right), "smoothed": row["smoothed"]}
        (a, la), (b, lb) = out[share]["0"], out[share]["auto"]
        print(f"noise {share:>4.0%}   F1 {a.f1:.3f} -> {b.f1:.3f}   live/dead {la:.3f} -> {lb:.3f}   "
              f"smoothed {row['smoothed']} of {len(fields)}", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--adcc", action="store_true", help="the ADCC fields with noise added instead")
    parser.add_argument("cases", nargs="*", help=f"of: {', '.join(CASES)} (default: all)")
    args = parser.parse_args(argv)
    if args.adcc:
        return adcc_noise(args.data / "celldetective_adcc_livedead")
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; cases are {list(CASES)}")
    root = args.data / "coelho2009_hoechst_nuclei"
    pairs = [p for s in ("gnf", "ic100") for p in find_pairs(root / s / "images", root / s / "labels")]
    images = [(read_image(i), read_image(label)) for i, label in pairs]
    print(f"{len(images)} Coelho images, default parameters: object F1 at IoU 0.5 / mean matched IoU")
    out = {}
    for name in args.cases or CASES:
        start, total = time.perf_counter(), Scores()
        rng = np.random.default_rng(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # size-filter and dim-Hoechst advice, expected on some cases
            for image, labels in images:
                case = CASES[name]
                if getattr(case, "frame", False):
                    flat = np.rint(rng.normal(1000, 20, image.shape)).astype(np.uint16)
                    (bf, _), (d7, _) = case(flat, labels, rng), case(np.full_like(image, 5), labels, rng)
                    image, labels = case(image, labels, rng)
                    total = total + match_instances(labels, segment_frame(bf, image, d7).nuclei)
                    continue
                image, labels = case(image, labels, rng)
                total = total + match_instances(labels, segment_nuclei(image))
        out[name] = total
        print(f"{name:<30}{total.f1:>7.3f}{total.mean_iou:>7.3f}   ({time.perf_counter() - start:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    main()
