"""`livedead-gpu evaluate` on label files of every common encoding: the same nuclei, the same scores?

    PYTHONPATH=. .venv/bin/python benchmarks/bench_labels.py [--data ../shared/data]

Coelho's 29 Hoechst images keep their pixels; their hand-drawn labels (grey PNG ids) are saved
again as public sets and annotation tools save them, into a temporary folder:

- ``ids``: 16-bit TIFF instance ids, as Labkit, napari or Cellpose save them;
- ``colour``: an RGB PNG picture, one colour an object, colours reused for objects that do not
  touch (greedy colouring), as BBBC039's masks are drawn;
- ``palette``: the same as an indexed-colour PNG (reused indices);
- ``masks``: a folder of one 0/255 PNG a nucleus, as the Data Science Bowl 2018's ``masks/``;
- ``binary``: a 0/255 mask (touching nuclei then are one object: what such a file loses).

Each folder goes through `find_pairs` and `evaluate_pairs`, as the command runs it; the table
gives the pooled object F1, matched IoU and pixel IoU, the drawn nuclei read, and a label
file's read time alone (the mean over the files, each read once before the scoring).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from livedead_gpu.evaluate import evaluate_pairs, find_pairs, read_image

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
#: Seven colours far apart (any would do: reading keys on the exact RGB value).
COLOURS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240))


def colours_of(labels) -> dict:
    """``{id: colour index}``, touching objects (8-connected) apart, colours reused otherwise."""
    used = {}
    for k, box in enumerate(ndi.find_objects(labels), 1):
        if box is None:
            continue
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        ring = ndi.binary_dilation(labels[grown] == k, np.ones((3, 3), bool))
        taken = {used[j] for j in np.unique(labels[grown][ring]) if j in used}
        used[k] = next(c for c in range(len(COLOURS)) if c not in taken)
    return used


def colour_coded(labels) -> np.ndarray:
    """(M, N, 3) uint8 picture of ``labels`` as BBBC039's masks are drawn (black background)."""
    lut = np.zeros((int(labels.max()) + 1, 3), np.uint8)
    for k, c in colours_of(labels).items():
        lut[k] = COLOURS[c]
    return lut[labels]


def palette_coded(labels):
    """``labels`` as a Pillow indexed-colour image: index = colour + 1, reused alike."""
    from PIL import Image

    lut = np.zeros(int(labels.max()) + 1, np.uint8)
    for k, c in colours_of(labels).items():
        lut[k] = c + 1
    image = Image.fromarray(lut[labels], mode="P")
    image.putpalette([0, 0, 0, *(v for c in COLOURS for v in c)] + [0] * (3 * (255 - len(COLOURS))))
    return image


def write(kind, labels, path):
    import tifffile
    from PIL import Image

    if kind == "ids":
        tifffile.imwrite(path.with_suffix(".tif"), labels.astype(np.uint16))
    elif kind == "colour":
        Image.fromarray(colour_coded(labels)).save(path.with_suffix(".png"))
    elif kind == "palette":
        palette_coded(labels).save(path.with_suffix(".png"))
    elif kind == "masks":
        path.mkdir()
        for k in np.unique(labels)[1:]:
            Image.fromarray(np.uint8(labels == k) * 255).save(path / f"{k}.png")
    else:
        Image.fromarray(np.uint8(labels > 0) * 255).save(path.with_suffix(".png"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    root = args.data / "coelho2009_hoechst_nuclei"
    if not root.is_dir():
        raise SystemExit(f"no Coelho set at {root}")
    pairs = [p for subset in ("gnf", "ic100") for p in find_pairs(root / subset / "images", root / subset / "labels")]
    out = {}
    print(f"{'labels saved as':16s} {'F1':>6s} {'IoU':>6s} {'pixIoU':>6s} {'drawn':>6s} {'read ms':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ids", "colour", "palette", "masks", "binary"):
            folder = Path(tmp) / kind
            folder.mkdir()
            for image, label in pairs:
                stem = f"{image.parent.parent.name}-{image.stem}"
                (folder / "images").mkdir(exist_ok=True)
                (folder / "images" / f"{stem}{image.suffix}").symlink_to(image.resolve())
                write(kind, read_image(label, labels=True), folder / f"{stem}_labels")
            mine = find_pairs(folder / "images", folder)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # the binary masks' warning, once an image
                t = time.perf_counter()
                for _, label in mine:
                    read_image(label, labels=True)
                read = (time.perf_counter() - t) / len(mine)
                s = evaluate_pairs(mine)
            out[kind] = s
            print(f"{kind:16s} {s.f1:6.3f} {s.mean_iou:6.3f} {s.pixel_iou:6.3f} {s.tp + s.fn:6d} {1e3 * read:8.0f}")
    return out


if __name__ == "__main__":
    main()
