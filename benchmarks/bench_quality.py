"""Label quality on the real annotated sets in ../shared/data: nucleus object F1 at IoU 0.5,
mean matched IoU, pixel IoU; on ADCC also the live/dead call of each hand-drawn nucleus.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_quality.py [--data ../shared/data] [--json out.json]

Presets compared: "measured" (the defaults: the "contrast" nucleus threshold, touching
nuclei split, Draq7-bright regions as nuclei of their own, the Draq7-ratio dead call), the
same without the notch cut of nuclei pressed flat ("no notch cut", ``notch_depth = 0``),
without the split ("no split") and, on ADCC, without the Draq7 seeds ("no dead seeds"),
"article" (block-max, no size filter, no split) and an Otsu + size filter baseline
(scikit-image's threshold_otsu, holes filled, objects under 1000 px dropped; on Coelho
only; a baseline, not package code).
No parameter is tuned per image; the ADCC runs give the pixel size from the JSON. On ADCC
also each field's cell area (`cell_areas`: its share of the field and of the drawn nuclei,
and how flat the field's flattest blocks are against the camera noise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from livedead_gpu import SegmentParams
from livedead_gpu.backends import get_backend
from livedead_gpu.evaluate import Scores, find_pairs, match_instances, read_image, score_calls, segment_nuclei
from livedead_gpu.checks import data_box
from livedead_gpu.stages import find_nuclei, frame_padding

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def otsu_labels(image, min_area):
    import scipy.ndimage as ndi
    from skimage.filters import threshold_otsu

    mask = ndi.binary_fill_holes(image > threshold_otsu(image))
    labels, _ = ndi.label(mask, np.ones((3, 3)))
    areas = np.bincount(labels.ravel())
    mask &= (areas >= min_area)[labels]
    return ndi.label(mask, np.ones((3, 3)))[0]


def coelho(root, methods):
    out = {}
    for subset in ("gnf", "ic100"):
        pairs = find_pairs(root / subset / "images", root / subset / "labels")
        for name, fn in methods.items():
            total = Scores()
            for image_path, label_path in pairs:
                total = total + match_instances(read_image(label_path), fn(read_image(image_path)))
            out.setdefault(name, {})[subset] = total
    for name in out:
        out[name]["all"] = out[name]["gnf"] + out[name]["ic100"]
    return out


def adcc_fields(root):
    for path in sorted((root / "images").glob("*.tif")):
        meta = json.loads(path.with_suffix(".json").read_text())
        ch = meta["channels"]
        import tifffile

        image = tifffile.imread(path)
        labels = tifffile.imread(root / "labels_target_nuclei" / f"{path.stem}_labelled.tif")
        yield (path.stem, image[ch.index("live_nuclei_channel")], image[ch.index("dead_nuclei_channel")], labels,
               float(meta.get("spatial_calibration", 0.3112)), image[ch.index("brightfield_channel")])


def field_nuclei(brightfield, hoechst, pi, p, backend="cpu"):
    """`find_nuclei` of a field as `segment_frame` runs it: inside the alignment padding (whole
    margins of 0 in every channel, one line of them kept), the rest of the padding set aside."""
    be = get_backend(backend)
    box = data_box([brightfield, hoechst, pi], p.coarseness) or np.s_[:, :]
    bf, ho, d7 = (np.ascontiguousarray(a[box]) for a in (brightfield, hoechst, pi))
    nuc, *rest = find_nuclei(ho, d7, p, be, padding=frame_padding(bf, ho, d7, backend=be))
    found = np.zeros(hoechst.shape, np.int32)
    found[box] = nuc.labels
    return (nuc._replace(labels=found), *rest)


def adcc(root, presets):
    """Each preset on the ADCC fields: nucleus scores, and each drawn nucleus' live/dead call
    (`evaluate.called_dead`) against the issue's reference (`evaluate.reference_dead`: mean PI
    over 3x the median PI outside every drawn nucleus)."""
    be = get_backend("cpu")
    out = {}
    for name, make in presets.items():
        total = Scores()
        for stem, hoechst, pi, labels, px, brightfield in adcc_fields(root):
            nuc, *_ = field_nuclei(brightfield, hoechst, pi, make(px), be)
            total = total + match_instances(labels, nuc.labels) + score_calls(labels, pi, nuc.labels, nuc.dead)
        out[name] = {"scores": total, "live_dead_correct": total.live_dead_right, "nuclei": total.calls,
                     "dead": total.drawn_dead}
    return out


def without_effectors(root, p):
    """The defaults on the fields with drawn effector cells (``labels_effector_cells``): scores
    as found, and with the found nuclei lying mostly inside a drawn effector cell left out (the
    target-nucleus labels leave the effectors' nuclei undrawn)."""
    out = {"as found": Scores(), "effectors left out": Scores()}
    for stem, hoechst, pi, labels, px, brightfield in adcc_fields(root):
        path = root / "labels_effector_cells" / f"{stem}_labelled.tif"
        if not path.exists():
            continue
        import tifffile

        effector = tifffile.imread(path) > 0
        found = field_nuclei(brightfield, hoechst, pi, p(px))[0].labels
        inside = (np.bincount(found.ravel(), weights=effector.ravel(), minlength=found.max() + 1)
                  > np.bincount(found.ravel(), minlength=found.max() + 1) / 2)
        inside[0] = False
        out["as found"] = out["as found"] + match_instances(labels, found)
        out["effectors left out"] = out["effectors left out"] + match_instances(labels, np.where(inside[found], 0, found))
    return out


def cell_areas(root):
    """Per ADCC field: the cell area's share of the field (`stages.cell_area`, the defaults), the
    share of the drawn nucleus pixels inside it, the article's cell area's share, and how flat the
    field's flattest places are: the mean gradient (Gaussian of 1 px, Sobel) of its flattest 1 % of
    16-px blocks over the mean gradient camera noise alone gives (white noise of Immerkær's sigma).
    Open background reads near 1; a field with none, its cells' texture."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import article
    from livedead_gpu.stages import cell_area
    from livedead_gpu.stages.gradient import noise_blocks, noise_gains, padded_gradient, residual_median

    be = get_backend("cpu")
    lap, sobel = noise_gains(1.0)
    out = {}
    for stem, _, _, labels, _, brightfield in adcc_fields(root):
        area = cell_area(brightfield).mask
        gradient, _ = padded_gradient(brightfield, 1.0, be)
        means = be.block_mean(gradient, 16)
        flat = np.quantile(means[noise_blocks(brightfield, 16, be)[: means.shape[0], : means.shape[1]]], 0.01)
        white = sobel * residual_median(brightfield, be) / (lap * 0.6745) * np.sqrt(np.pi / 2)
        out[stem] = {"cell_area": float(area.mean()), "nuclei_inside": float(area[labels > 0].mean()),
                     "article_cell_area": float(article.article_cell_area(brightfield).mean()),
                     "flattest_over_noise": float(flat / white)}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    measured, article = SegmentParams.from_preset("measured"), SegmentParams.from_preset("article")
    no_split = SegmentParams.from_preset("measured", split_nuclei=False)
    no_notch = SegmentParams.from_preset("measured", notch_depth=0.0)
    results = {"coelho": {}, "adcc": {}}
    c = coelho(args.data / "coelho2009_hoechst_nuclei", {
        "measured": lambda im: segment_nuclei(im, measured),
        "no notch cut": lambda im: segment_nuclei(im, no_notch),
        "no split": lambda im: segment_nuclei(im, no_split),
        "article": lambda im: segment_nuclei(im, article),
        "otsu+size": lambda im: otsu_labels(im, 1000),
    })
    print("Coelho 2009 Hoechst (gnf U2OS 12 images, ic100 NIH3T3 17): F1 / mean matched IoU / pixel IoU")
    print(f"{'method':<14}{'gnf':>22}{'ic100':>22}{'all':>22}")
    for name, subsets in c.items():
        cells = "".join(f"{s.f1:>10.3f}{s.mean_iou:>6.3f}{s.pixel_iou:>6.3f}" for s in subsets.values())
        print(f"{name:<14}{cells}")
        results["coelho"][name] = {k: v.as_dict() for k, v in subsets.items()}
    a = adcc(args.data / "celldetective_adcc_livedead", {
        "measured": lambda px: SegmentParams.from_preset("measured", pixel_size=px),
        "no notch cut": lambda px: SegmentParams.from_preset("measured", pixel_size=px, notch_depth=0.0),
        "no split": lambda px: SegmentParams.from_preset("measured", pixel_size=px, split_nuclei=False),
        "no dead seeds": lambda px: SegmentParams.from_preset("measured", pixel_size=px, dead_seeds=False),
        "article": lambda px: article,
    })
    print("\nADCC (8 fields, Hoechst = nuclei, PI = dead stain): F1 / mean matched IoU / pixel IoU, live/dead correct")
    for name, r in a.items():
        s = r["scores"]
        print(f"{name:<14}{s.f1:>10.3f}{s.mean_iou:>6.3f}{s.pixel_iou:>6.3f}   live/dead {r['live_dead_correct']:.3f}"
              f" of {r['nuclei']} drawn nuclei ({r['dead']} dead by mean PI > 3x background)")
        results["adcc"][name] = {**s.as_dict(), "live_dead_correct": round(r["live_dead_correct"], 6),
                                 "nuclei": r["nuclei"], "dead": r["dead"]}
    e = without_effectors(args.data / "celldetective_adcc_livedead",
                          lambda px: SegmentParams.from_preset("measured", pixel_size=px))
    print(f"\nADCC fields with drawn effector cells ({e['as found'].images}): F1 / mean matched IoU, TP / FP / FN")
    for name, s in e.items():
        print(f"{name:<20}{s.f1:>6.3f}{s.mean_iou:>6.3f}   {s.tp} / {s.fp} / {s.fn}")
        results["adcc"][f"effector fields, {name}"] = s.as_dict()
    areas = cell_areas(args.data / "celldetective_adcc_livedead")
    print("\nADCC cell area (defaults): share of the field, of the drawn nucleus pixels; the article's share; "
          "flattest 1 % of 16-px blocks' gradient / camera noise's")
    for stem, r in areas.items():
        print(f"{stem[:36]:<38}{r['cell_area']:>7.4f}{r['nuclei_inside']:>8.4f}{r['article_cell_area']:>8.4f}"
              f"{r['flattest_over_noise']:>8.1f}")
    results["adcc"]["cell area"] = areas
    print("\nErrors of the defaults (unmatched drawn: merged / split / missed / outlined poorly; "
          "unmatched found over no drawn pixel of all unmatched found)")
    for name, scores, before in (("Coelho gnf", c["measured"]["gnf"], c["no notch cut"]["gnf"]),
                                 ("Coelho ic100", c["measured"]["ic100"], c["no notch cut"]["ic100"]),
                                 ("ADCC", a["measured"]["scores"], a["no notch cut"]["scores"])):
        print(f"{name:<14}{scores.fn:>4} = {scores.merged} / {scores.split} / {scores.missed} / {scores.outlined}"
              f";  {scores.extra} of {scores.fp}   (no notch cut: {before.merged} merged)")
    print(f"\n{time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
