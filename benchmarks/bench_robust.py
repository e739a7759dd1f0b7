"""Nucleus label quality when the Coelho images change as other microscopes would change them.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_robust.py [--data ../shared/data] [CASE ...]

Each case transforms the 29 Coelho Hoechst images (8-bit) and their labels the same way: rescaled
(another magnification), stored in 16 bits (shifted by 4 bits as 12-bit cameras do, scaled by 257
as ``skimage.img_as_uint`` does, with a camera offset), with camera noise added, dimmed, vignetted or
lit by a ramp. The default parameters segment each; the object F1 at IoU 0.5 and the mean matched IoU
are pooled over the images. No parameter is tuned per case.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

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
    "vignette 0.5": lit("vignette", 0.5),
    "ramp 0.3": lit("ramp", 0.3),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("cases", nargs="*", help=f"of: {', '.join(CASES)} (default: all)")
    args = parser.parse_args(argv)
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
                image, labels = CASES[name](image, labels, rng)
                total = total + match_instances(labels, segment_nuclei(image))
        out[name] = total
        print(f"{name:<30}{total.f1:>7.3f}{total.mean_iou:>7.3f}   ({time.perf_counter() - start:.0f} s)", flush=True)
    return out


if __name__ == "__main__":
    main()
