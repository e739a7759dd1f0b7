"""livedead_gpu.evaluate: matching, scores, file pairing; the "contrast" nucleus threshold on
synthetic sparse/dense frames (both backends) and on the real Coelho set; presets."""

import warnings

import numpy as np
import pytest
import scipy.ndimage
import skimage

from livedead_gpu import SegmentParams, synthetic
from livedead_gpu.backends import CpuBackend
from livedead_gpu.backends.gpu import ArrayBackend
from livedead_gpu.evaluate import Scores, evaluate_pairs, find_pairs, match_instances, read_image, segment_nuclei
from livedead_gpu.stages import dead_by_ratio, find_nuclei, nucleus_mask
from livedead_gpu.stages.nuclei import background


def test_match_counts_and_ious():
    truth = np.zeros((20, 20), np.int32)
    truth[0:10, 0:10] = 1       # found exactly
    truth[12:20, 0:8] = 2       # found as two halves: IoU 0.5 for one half at most
    truth[0:5, 15:20] = 7       # missed
    found = np.zeros_like(truth)
    found[0:10, 0:10] = 3
    found[12:20, 0:4] = 4
    found[12:20, 4:8] = 5
    found[15:20, 12:15] = 9     # spurious
    s = match_instances(truth, found)
    assert (s.tp, s.fp, s.fn) == (2, 2, 1)  # 1<->3 (IoU 1), 2<->4 (IoU 0.5, the >= threshold); 5, 9 spurious
    assert s.mean_iou == pytest.approx(0.75)
    assert s.f1 == pytest.approx(4 / (4 + 2 + 1))
    inter = 100 + 64
    union = 100 + 64 + 25 + 15
    assert s.pixel_iou == pytest.approx(inter / union)
    pooled = s + s
    assert (pooled.tp, pooled.images, pooled.f1) == (4, 2, s.f1)


def test_error_kinds():
    truth = np.zeros((30, 40), np.int32)
    truth[0:8, 0:5], truth[0:8, 5:10], truth[0:8, 10:15] = 1, 2, 7   # merged: one found object over all three
    truth[10:20, 0:10] = 3                       # split in three found thirds
    truth[22:28, 0:6] = 4                        # missed
    truth[10:20, 20:30] = 5                      # outlined poorly: a found sliver
    truth[0:6, 30:36] = 6                        # matched
    found = np.zeros_like(truth)
    found[0:8, 0:15] = 1
    found[10:20, 0:3], found[10:20, 3:6], found[10:20, 6:10] = 2, 3, 8
    found[10:20, 20:23] = 4
    found[0:6, 30:36] = 5
    found[24:28, 30:34] = 6                      # extra: over no drawn pixel
    s = match_instances(truth, found)
    assert (s.tp, s.fn, s.fp) == (1, 6, 6)
    assert (s.missed, s.merged, s.split, s.outlined, s.extra) == (1, 3, 1, 1, 1)
    # A found half of a drawn object matches it (IoU 0.5): no split; the other half is a false positive.
    halves = found.copy()
    halves[10:20, 0:5], halves[10:20, 5:10] = 2, 3
    h = match_instances(truth, halves)
    assert (h.tp, h.split, h.fp) == (2, 0, 4)
    pooled = s + h
    assert (pooled.merged, pooled.split, pooled.outlined, pooled.extra) == (6, 1, 2, 2)
    assert pooled.as_dict()["outlined"] == 2


def test_match_edge_cases():
    empty = np.zeros((5, 5), np.uint8)
    assert match_instances(empty, empty).f1 == 1.0
    with pytest.raises(TypeError, match="bool"):
        match_instances(empty > 0, empty)
    with pytest.raises(ValueError, match=r"truth holds negative labels \(min -1\)"):
        match_instances(np.full((5, 5), -1, np.int32), empty)   # -1 = "ignore" in some tools: not an object
    with pytest.raises(ValueError, match="shape"):
        match_instances(empty, np.zeros((5, 6), np.uint8))
    # "0.5" and None failed with "'<' not supported between instances of 'int' and 'str'"
    for bad in ("0.5", None, True, float("nan"), 0):
        with pytest.raises(ValueError, match=r"iou_threshold must be a number in \(0, 1\]"):
            match_instances(empty, empty, bad)
        with pytest.raises(ValueError, match="iou_threshold"):
            evaluate_pairs([], iou_threshold=bad)


def test_segment_nuclei_refuses_a_dict_of_params():
    image = np.zeros((32, 32), np.uint16)
    # {} ran the defaults; {"split_nuclei": False} failed deep with AttributeError
    for params in ({}, {"split_nuclei": False}):
        with pytest.raises(TypeError, match="params must be a SegmentParams"):
            segment_nuclei(image, params)


def test_find_pairs_and_read(tmp_path):
    import cv2
    import tifffile

    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cv2.imwrite(str(tmp_path / "im" / "a.png"), np.dstack([grey] * 3))
    tifffile.imwrite(tmp_path / "im" / "b.tif", np.stack([grey, grey + 1]))
    (tmp_path / "im" / "b.json").write_text('{"channels": ["bf", "nuclei"]}')
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), grey)
    tifffile.imwrite(tmp_path / "lab" / "b_labelled.tif", grey.astype(np.int32))
    pairs = find_pairs(tmp_path / "im", tmp_path / "lab")
    assert [(i.name, l.name) for i, l in pairs] == [("a.png", "a.png"), ("b.tif", "b_labelled.tif")]
    assert (read_image(pairs[0][0]) == grey).all()
    assert (read_image(pairs[1][0], "nuclei") == grey + 1).all()
    assert (read_image(pairs[0][1], 0) == grey).all()   # a 2-D image is its channel 0
    with pytest.raises(ValueError, match="channel 2 given, but .* is a one-channel 2-D image"):
        read_image(pairs[0][1], 2)
    with pytest.raises(ValueError, match="choose one"):
        read_image(pairs[1][0])


def test_find_pairs_with_labels_beside_their_images(tmp_path):
    import tifffile

    # one folder for both (cellpose's x.tif + x_cp_masks.tif): every file was paired with itself,
    # an intensity image scored as labels without a word
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "x_cp_masks.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "y.tif", np.zeros((8, 8), np.uint16))
    with pytest.warns(UserWarning, match=r"not scored, .*: 1 file \(y.tif\)"):   # not x_cp_masks.tif
        pairs = find_pairs(tmp_path, tmp_path)
    assert [(i.name, l.name) for i, l in pairs] == [("x.tif", "x_cp_masks.tif")]
    (tmp_path / "x_cp_masks.tif").unlink()
    with pytest.raises(ValueError, match="no image in .* has a label file"):
        find_pairs(tmp_path, tmp_path)


def test_read_image_channels_are_rgb_in_every_format(tmp_path):
    import cv2
    import tifffile

    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # OpenCV writes BGR: an RGB picture of (10, 20, 30)
    rgba = np.dstack([rgb, np.full((6, 6), 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "d.png"), rgba[..., [2, 1, 0, 3]])
    for name in ("c.tif", "c.png", "d.png"):
        assert [int(read_image(tmp_path / name, c)[0, 0]) for c in range(3)] == [10, 20, 30], name


def same_objects(a, b):
    """Whether two label images hold the same objects, whatever their ids."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return ((a == 0) == (b == 0)).all() and len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


def test_read_labels(tmp_path):
    import tifffile
    from PIL import Image

    ids = np.zeros((8, 8), np.uint8)
    ids[1:3, 1:3], ids[5:7, 4:8] = 1, 7
    palette = Image.fromarray(ids, mode="P")
    palette.putpalette([v for i in range(256) for v in ((37 * i) % 256, (91 * i) % 256, (13 * i) % 256)])
    palette.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png", labels=True), ids)  # the indices, not colours
    Image.fromarray(np.dstack([ids] * 3)).save(tmp_path / "grey.png")   # grey ids saved as RGB
    assert np.array_equal(read_image(tmp_path / "grey.png", labels=True), ids)
    tifffile.imwrite(tmp_path / "f.tif", ids.astype(np.float32))   # Fiji's 32-bit label images
    got = read_image(tmp_path / "f.tif", labels=True)
    assert got.dtype == np.int32 and np.array_equal(got, ids)
    for bad in (0.5, np.nan, -1.0):
        tifffile.imwrite(tmp_path / "f.tif", np.where(ids > 0, ids, bad).astype(np.float32))
        with pytest.raises(ValueError, match=r"f.tif' holds float32 values that are not ids"):
            read_image(tmp_path / "f.tif", labels=True)
    for planes in (2, 5):
        tifffile.imwrite(tmp_path / "planes.tif", np.stack([ids] * planes))
        with pytest.raises(ValueError, match=rf"label image .*planes.tif.* has shape \({planes}, 8, 8\); expected "
                                             "one 2-D plane"):
            read_image(tmp_path / "planes.tif", labels=True)


def test_read_colour_coded_labels(tmp_path):
    import tifffile
    from PIL import Image

    # three objects: 1 and 3 apart in one colour (reused, as BBBC039 does), 2 touching 1 in another
    truth = np.zeros((12, 12), np.int32)
    truth[1:4, 1:4], truth[1:4, 4:6], truth[8:11, 6:11] = 1, 2, 3
    red, green = (200, 10, 10), (10, 200, 10)
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[truth == 1], rgb[truth == 2], rgb[truth == 3] = red, green, red
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.dstack([rgb, np.where(truth > 0, 255, 0).astype(np.uint8)])
    rgba[truth == 0, :3] = 90                                      # a transparent background of any colour
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
    palette = Image.fromarray(np.uint8(truth % 2 + (truth > 0)), mode="P")   # indices 2, 1, 2: one reused
    palette.putpalette([0, 0, 0, *red, *green] + [0] * 759)
    palette.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a picture's reused colours are its code: no warning
        for name in ("rgb.png", "rgba.png", "rgb16.tif", "p.png"):
            got = read_image(tmp_path / name, labels=True)
            assert got.ndim == 2 and got.dtype.kind in "iu" and same_objects(got, truth), name
    rgb[truth == 0] = 255
    Image.fromarray(rgb).save(tmp_path / "white.png")
    with pytest.raises(ValueError, match=r"white.png' is a colour picture with no black .*pixel"):
        read_image(tmp_path / "white.png", labels=True)


def test_reused_grey_ids_are_split_with_a_warning(tmp_path):
    import tifffile

    ids = np.zeros((10, 10), np.uint8)
    ids[1:3, 1:3], ids[6:9, 6:9], ids[1:3, 6:9] = 3, 3, 4   # id 3 on two objects (an 8-bit tool's wrap-around)
    tifffile.imwrite(tmp_path / "a.tif", ids)
    with pytest.warns(UserWarning, match=r"a.tif' holds ids on several separate objects \(of 2 ids, 1: 3 on 2\)"):
        got = read_image(tmp_path / "a.tif", labels=True)
    assert same_objects(got, scipy.ndimage.label(ids > 0)[0]) and got[1, 1] == 3 and got[7, 7] > 4


def test_colour_coded_labels_score_as_their_ids(tmp_path):
    import tifffile
    from bench_labels import colour_coded
    from PIL import Image

    f = synthetic.make_frame((192, 192), n_cells=24, touching=1, touching_nuclei=1, seed=1)
    pairs = [(tmp_path / "a.tif", tmp_path / "a_labels.tif"), (tmp_path / "a.tif", tmp_path / "a_mask.png")]
    tifffile.imwrite(pairs[0][0], f.hoechst)
    tifffile.imwrite(pairs[0][1], f.nuclei)
    picture = colour_coded(f.nuclei)
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) - 1 < len(np.unique(f.nuclei)) - 1   # colours reused
    Image.fromarray(picture).save(pairs[1][1])
    ids, colours = (evaluate_pairs([pair]) for pair in pairs)
    assert ids.tp + ids.fn == f.nuclei.max() > 20
    assert (colours.tp, colours.fp, colours.fn) == (ids.tp, ids.fp, ids.fn)


def write_masks(folder, labels):
    """``labels`` as one 0/255 PNG a nucleus in ``folder`` (the Data Science Bowl 2018's masks/)."""
    import cv2

    folder.mkdir(parents=True)
    for k in np.unique(labels)[1:]:
        cv2.imwrite(str(folder / f"m{k:03d}.png"), np.uint8(labels == k) * 255)


def test_a_folder_of_masks_is_one_label_image(tmp_path):
    import cv2
    import tifffile

    f = synthetic.make_frame((128, 128), n_cells=6, touching=1, touching_nuclei=1, seed=0)
    (tmp_path / "im").mkdir()
    tifffile.imwrite(tmp_path / "im" / "a.tif", f.hoechst)
    tifffile.imwrite(tmp_path / "im" / "b.tif", f.hoechst)
    write_masks(tmp_path / "lab" / "a", f.nuclei)               # labels/a/*.png
    write_masks(tmp_path / "lab" / "b_masks", f.nuclei)         # labels/b_masks/*.png
    write_masks(tmp_path / "im" / "a", f.nuclei)                # beside the images: a/ itself
    got = read_image(tmp_path / "lab" / "a", labels=True)
    assert got.dtype == np.int32 and same_objects(got, f.nuclei) and got.max() == len(np.unique(f.nuclei)) - 1
    assert find_pairs(tmp_path / "im", tmp_path / "lab") == [
        (tmp_path / "im" / "a.tif", tmp_path / "lab" / "a"), (tmp_path / "im" / "b.tif", tmp_path / "lab" / "b_masks")]
    with pytest.warns(UserWarning, match=r"no label file .*\(b.tif\)"):
        assert find_pairs(tmp_path / "im", tmp_path / "im") == [(tmp_path / "im" / "a.tif", tmp_path / "im" / "a")]
    ids = evaluate_pairs([(tmp_path / "im" / "a.tif", tmp_path / "im" / "a")])
    tifffile.imwrite(tmp_path / "a_labels.tif", f.nuclei)
    assert ids == evaluate_pairs([(tmp_path / "im" / "a.tif", tmp_path / "a_labels.tif")]) and ids.tp > 5
    # masks that overlap, of another shape, JPEG, or none
    bad = tmp_path / "lab" / "a"
    cv2.imwrite(str(bad / "m999.png"), np.uint8(f.nuclei > 0) * 255)
    with pytest.raises(ValueError, match=r"mask files .*m\d{3}.png' and 'm999.png' overlap \(\d+ px\)"):
        read_image(bad, labels=True)
    cv2.imwrite(str(bad / "m999.png"), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"mask file .*m999.png' has shape \(4, 4\), 'm001.png' beside it"):
        read_image(bad, labels=True)
    (bad / "m999.png").unlink()
    cv2.imwrite(str(bad / "m999.jpg"), np.zeros((128, 128), np.uint8))
    with pytest.raises(ValueError, match=r"mask file .*m999.jpg' is a JPEG"):
        read_image(bad, labels=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"label folder .*empty' holds no image file"):
        read_image(tmp_path / "empty", labels=True)


def test_a_folder_of_samples_as_the_data_science_bowl_lays_them_out(tmp_path):
    import cv2

    root = tmp_path / "stage1_train"
    frames = {f"id{seed}": synthetic.make_frame((128, 128), n_cells=6, seed=seed) for seed in (0, 1, 2)}
    for name, f in frames.items():
        (root / name / "images").mkdir(parents=True)
        grey = np.uint8(f.hoechst >> 4)
        cv2.imwrite(str(root / name / "images" / f"{name}.png"), np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
        if name != "id2":
            write_masks(root / name / "masks", f.nuclei)
    with pytest.warns(UserWarning, match=r"no masks/ folder beside their images/: 1 file \(id2.png\)"):
        pairs = find_pairs(root, root)
    assert pairs == [(root / n / "images" / f"{n}.png", root / n / "masks") for n in ("id0", "id1")]
    scores = evaluate_pairs(pairs)
    assert scores.tp + scores.fn == sum(len(np.unique(frames[n].nuclei)) - 1 for n in ("id0", "id1"))
    assert scores.f1 > 0.8
    with pytest.raises(ValueError, match=r"stage1_train' is a folder of samples .*give it as the labels folder too"):
        find_pairs(root, tmp_path)
    cv2.imwrite(str(root / "id0" / "images" / "extra.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"id0/images' holds 2 image files \(extra.png, id0.png\); expected one"):
        find_pairs(root, root)


def test_read_image_names_a_damaged_file(tmp_path):
    (tmp_path / "short.tif").write_bytes(b"II*")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + bytes(range(200)))
    (tmp_path / "junk.png").write_bytes(b"not a png")
    for name in ("short.tif", "junk.tif", "junk.png"):
        with pytest.raises(ValueError, match=f"cannot read .*{name}"):
            read_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")


def test_find_pairs_refuses_one_stem_in_two_roles(tmp_path):
    import tifffile

    # a.tif (image) and a.png (labels) in one folder: each could be the other's labels
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint16))
    tifffile.imwrite(tmp_path / "a.png", np.zeros((8, 8), np.uint16))
    with pytest.raises(ValueError, match="'a.png', 'a.tif' in .* share the name 'a'"):
        find_pairs(tmp_path, tmp_path)
    # named as that error asks, the tagged label file wins
    import cv2

    (tmp_path / "a.png").rename(tmp_path / "a_labels.png")
    assert [(i.name, l.name) for i, l in find_pairs(tmp_path, tmp_path)] == [("a.tif", "a_labels.png")]
    # a preview a.jpg beside a.tif would score the one annotated image twice
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="'.*a.jpg' and '.*a.tif' both pair with the label file '.*a_labels.png'"):
        find_pairs(tmp_path, tmp_path)
    # two label files of one image in a labels folder: of one stem, or of two tags
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "im" / "b.tif", np.zeros((8, 8), np.uint16))
    for names in (("b_mask.tif", "b_mask.png"), ("b_mask.tif", "b_labels.tif")):
        for f in (tmp_path / "lab").iterdir():
            f.unlink()
        for name in names:
            tifffile.imwrite(tmp_path / "lab" / name, np.zeros((8, 8), np.uint16))
        with pytest.raises(ValueError, match="could each be the labels of .*b.tif"):
            find_pairs(tmp_path / "im", tmp_path / "lab")


def test_evaluate_pairs_names_the_image_and_keeps_every_row(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "dna.tif", rng.integers(0, 200, (64, 64)).astype(np.uint8))
        tifffile.imwrite(tmp_path / folder / "dna_mask.tif", np.zeros((64, 64), np.uint16))
    pairs = [(tmp_path / f / "dna.tif", tmp_path / f / "dna_mask.tif") for f in ("x", "y")]
    scores = evaluate_pairs(pairs)
    assert scores.images == 2 and len(scores.per_image) == 2
    tifffile.imwrite(tmp_path / "x" / "dna.tif", rng.random((64, 64)).astype(np.float32) / 10)
    with pytest.raises(ValueError, match=r"x/dna.tif'?: .*normalised"):
        evaluate_pairs(pairs)


def test_overlaps_scale_with_the_pairs_not_the_objects():
    # 40,000 drawn and 40,000 found objects: a dense table of counts would hold 1.6e9
    truth = np.arange(1, 40001, dtype=np.int32).reshape(200, 200).repeat(2, 0).repeat(2, 1)
    found = truth.copy()
    found[::2] = 0  # each found object is half its drawn one
    s = match_instances(truth, found)
    assert (s.tp, s.fp, s.fn) == (40000, 0, 0)
    assert s.mean_iou == pytest.approx(0.5)


# Synthetic floors. Sparse: 20 cells in 256^2 (~60% of blocks empty); dense: 60 cells
# in 256^2 (45-47 placed), 60% of them in touching pairs. Nucleus diameters 6-16 px.
# Measured with the "measured" preset (diameter measured on the image), seeds 0-3: F1 1.0
# sparse and dense (touching cells keep separate nuclei: the synthetic nuclei never touch),
# pixel IoU 0.79-0.83 (0.90-0.96 with nucleus_edge=0: a synthetic nucleus is a dome whose
# outer 1-2 px lie at 30-50 % of its plateau, and the half-height cut leaves them out; on
# the real sets the cut raised pixel IoU). Floors leave room for other seeds: F1 0.9 (2 of
# 20 nuclei lost), 0.85 dense, pixel IoU 0.75.
@pytest.mark.parametrize("n_cells, touching, f1_floor", [(20, 0.3, 0.9), (60, 0.6, 0.85)], ids=["sparse", "dense"])
@pytest.mark.parametrize("seed", [0, 1])
def test_contrast_on_synthetic(n_cells, touching, f1_floor, seed):
    with warnings.catch_warnings():  # a dense frame may not place every cell
        warnings.simplefilter("ignore")
        f = synthetic.make_frame((256, 256), n_cells=n_cells, touching=touching, seed=seed, dead_fraction=0.3)
    s = match_instances(f.nuclei, segment_nuclei(f.hoechst, SegmentParams.from_preset("measured")))
    assert s.f1 >= f1_floor
    assert s.pixel_iou >= 0.75


def test_dead_call_by_ratio_ignores_bleed_through():
    f = synthetic.make_frame((256, 256), n_cells=30, dead_fraction=0.3, seed=3)
    nuc, *_ = find_nuclei(f.hoechst, f.draq7, SegmentParams.from_preset("measured"))
    # Each found nucleus called as the drawn nucleus under most of it.
    ok = []
    for i in range(1, nuc.n + 1):
        truth = np.bincount(f.nuclei[nuc.labels == i]).argmax()
        if truth:
            ok.append(nuc.dead[i] == f.dead[truth])
    assert len(ok) >= 25 and np.mean(ok) >= 0.95
    # Draq7 at 2x background on every nucleus (bleed-through): nobody dies at ratio 3.
    draq7 = np.full(f.draq7.shape, 100, np.uint16)
    draq7[f.nuclei > 0] = 200
    assert not dead_by_ratio(f.nuclei, int(f.nuclei.max()), draq7, 3.0).any()
    draq7[f.nuclei == 1] = 400  # dim but 4x background
    assert dead_by_ratio(f.nuclei, int(f.nuclei.max()), draq7, 3.0)[1]


def test_contrast_parity_between_backends():
    f = synthetic.make_frame((200, 230), n_cells=25, seed=5)
    standin = ArrayBackend(np, scipy.ndimage, skimage, name="standin")
    p = SegmentParams.from_preset("measured")
    a, ta = nucleus_mask(f.hoechst, p, CpuBackend())
    b, tb = nucleus_mask(standin.to_device(f.hoechst), p, standin)
    assert ta == pytest.approx(tb)
    assert (a == standin.to_host(b)).all()


def test_background_is_the_grey_opening_box_mean():
    rng = np.random.default_rng(0)
    x = rng.random((40, 50)).astype(np.float32)
    ref = scipy.ndimage.uniform_filter(scipy.ndimage.grey_opening(x, size=(7, 7), mode="nearest"), 7, mode="nearest")
    np.testing.assert_allclose(background(x, 7, CpuBackend()), ref, atol=1e-5)


def test_presets():
    art = SegmentParams.from_preset("article")
    assert (art.cell_threshold, art.gradient_levels, art.smoothing, art.min_nucleus_area) == ("block-max", None, 0.0, 0)
    assert (art.nucleus_threshold, art.dead_call, art.preset) == ("block-max", "touch", "article")
    assert 'preset = "article"' in art.to_toml()
    assert SegmentParams.from_dict({"preset": "article", "offset": 1.1}) == SegmentParams.from_preset("article", offset=1.1)
    with pytest.raises(ValueError, match="preset must be one of"):
        SegmentParams.from_preset("best")
    with pytest.raises(ValueError, match="nucleus_diameter is in µm and needs pixel_size"):
        SegmentParams(nucleus_diameter=10.0)
    with pytest.raises(ValueError, match=r"dead_ratio must lie in \[1.0, 100.0\], got 0.5"):
        SegmentParams(dead_ratio=0.5)
    assert SegmentParams(pixel_size=0.5, nucleus_diameter=10.0).diameter_px == 20.0


@pytest.mark.data
def test_coelho_labels_as_colour_pictures_score_alike(coelho_dir, tmp_path):
    """Coelho's ids redrawn as BBBC039 draws its masks (colours reused apart) score the same."""
    from bench_labels import colour_coded
    from PIL import Image

    pairs = find_pairs(coelho_dir / "gnf" / "images", coelho_dir / "gnf" / "labels")[:2]
    coded = []
    for image, labels in pairs:
        Image.fromarray(colour_coded(read_image(labels, labels=True))).save(tmp_path / labels.name)
        coded.append((image, tmp_path / labels.name))
    ids, colours = evaluate_pairs(pairs), evaluate_pairs(coded)
    assert ids.tp + ids.fn > 50 and ids.f1 > 0.8
    assert (colours.tp, colours.fp, colours.fn, colours.pixel_iou) == (ids.tp, ids.fp, ids.fn, ids.pixel_iou)


@pytest.mark.data
def test_evaluate_command_scores_adcc_live_dead(adcc_dir, capsys):
    """The command reproduces the issue's ADCC check (bench_quality's 0.969; here without the
    brightfield, whose zeros also mark the alignment padding: 0.967)."""
    from livedead_gpu.cli import main

    assert main(["evaluate", str(adcc_dir / "images"), str(adcc_dir / "labels_target_nuclei"), "--channel",
                 "live_nuclei_channel", "--dead-channel", "dead_nuclei_channel", "--pixel-size", "0.3112"]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("live/dead: "))
    right = int(line.split()[1])
    assert " of 359 drawn nuclei" in line and "31 dead by mean dead stain" in line and right >= 0.95 * 359


@pytest.mark.data
def test_coelho_subset_f1(coelho_dir):
    """A third of the Coelho images (every 3rd; ~6 s): the full set measures 0.79 (benchmarks/README.md)."""
    total = Scores()
    p = SegmentParams.from_preset("measured")
    for subset in ("gnf", "ic100"):
        for image, labels in find_pairs(coelho_dir / subset / "images", coelho_dir / subset / "labels")[::3]:
            total = total + match_instances(read_image(labels), segment_nuclei(read_image(image), p))
    assert total.f1 >= 0.75
    assert total.pixel_iou >= 0.75


def test_evaluate_command(tmp_path, capsys):
    import json

    import tifffile

    from livedead_gpu.cli import main

    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    for seed in (0, 1):
        f = synthetic.make_frame((128, 128), n_cells=8, seed=seed)
        tifffile.imwrite(tmp_path / "im" / f"f{seed}.tif", f.hoechst)
        tifffile.imwrite(tmp_path / "lab" / f"f{seed}_labelled.tif", f.nuclei)
    out = tmp_path / "s.json"
    assert main(["evaluate", str(tmp_path / "im"), str(tmp_path / "lab"), "--preset", "measured",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "object F1" in printed and "unmatched drawn: " in printed and " merged with others, " in printed
    assert "F1 at IoU 0.5 / 0.75 / 0.9: " in printed and "mean AP over IoU 0.5:0.95" in printed
    report = json.loads(out.read_text())
    assert report["total"]["images"] == 2 and report["total"]["f1"] >= 0.9
    total = report["total"]
    assert total["merged"] + total["split"] + total["missed"] + total["outlined"] == total["fn"]
    assert report["params"]["preset"] == "measured"
    assert main(["evaluate", str(tmp_path / "im"), str(tmp_path / "nowhere")]) == 2
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "im"), str(tmp_path / "lab"), "--json", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "--json" in err.err and "is a folder" in err.err and not err.out   # before any image is segmented


def test_reference_and_called_dead():
    from livedead_gpu.evaluate import called_dead, reference_dead, score_calls

    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3], labels[5:8, 5:8], labels[1:3, 6:9] = 1, 2, 4   # id 3 drawn nowhere
    stain = np.full((10, 10), 10, np.uint16)
    stain[labels == 1], stain[labels == 2], stain[labels == 4] = 31, 29, 300
    assert reference_dead(labels, stain).tolist() == [False, True, False, False, True]
    assert reference_dead(labels, stain, ratio=2.5).tolist() == [False, True, True, False, True]
    found = np.zeros_like(labels)
    found[1:3, 1:2], found[1:3, 2:3] = 5, 6       # drawn 1 cut in two halves: a tie, the lower id wins
    found[5:8, 5:7], found[5:8, 7:8] = 7, 8       # drawn 2 mostly under found 7
    found_dead = np.zeros(9, bool)
    found_dead[[5, 8]] = True
    assert called_dead(labels, found, found_dead).tolist() == [False, True, False, False, False]  # 4: none found
    s = score_calls(labels, stain, found, found_dead)
    assert (s.calls, s.calls_right, s.drawn_dead, s.live_dead_right) == (3, 2, 2, 2 / 3)
    with pytest.raises(ValueError, match=r"stain has shape \(10, 9\), labels \(10, 10\)"):
        reference_dead(labels, stain[:, :9])
    with pytest.raises(ValueError, match="labels cover the whole image"):
        reference_dead(np.ones((4, 4), np.int32), stain[:4, :4])


def test_segment_live_dead_is_the_frames_nucleus_stage():
    from livedead_gpu import segment_frame
    from livedead_gpu.evaluate import segment_live_dead

    for seed in (0, 1):
        f = synthetic.make_frame((192, 192), n_cells=14, seed=seed)
        frame = segment_frame(f.brightfield, f.hoechst, f.draq7)
        labels, dead = segment_live_dead(f.hoechst, f.draq7)
        assert frame.n_dead > 0 and np.array_equal(labels, frame.nuclei) and np.array_equal(dead, frame.dead)
    with pytest.raises(ValueError, match=r"channel shapes differ: hoechst \(192, 192\), dead \(192, 100\)"):
        segment_live_dead(f.hoechst, f.draq7[:, :100])


def test_evaluate_scores_live_dead_calls(tmp_path, capsys):
    import json

    import tifffile

    from livedead_gpu.cli import main

    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    drawn = dead = 0
    for seed in (0, 1):
        f = synthetic.make_frame((192, 192), n_cells=14, seed=seed)
        tifffile.imwrite(tmp_path / "im" / f"f{seed}.tif", np.stack([f.hoechst, f.draq7]))   # (C, Y, X)
        tifffile.imwrite(tmp_path / "lab" / f"f{seed}_labels.tif", f.nuclei)
        drawn, dead = drawn + len(np.unique(f.nuclei)) - 1, dead + int(f.dead[np.unique(f.nuclei)[1:]].sum())
    pairs = find_pairs(tmp_path / "im", tmp_path / "lab")
    s = evaluate_pairs(pairs, channel=0, dead_channel=1)
    assert dead > 3 and (s.calls, s.drawn_dead) == (drawn, dead) and s.live_dead_right >= 0.95
    assert evaluate_pairs(pairs, channel=0).calls == 0 and evaluate_pairs(pairs, channel=0).live_dead_right is None
    with pytest.raises(ValueError, match="reference_ratio must be a number > 0, got 0"):
        evaluate_pairs(pairs, channel=0, dead_channel=1, reference_ratio=0)
    out = tmp_path / "s.json"
    assert main(["evaluate", str(tmp_path / "im"), str(tmp_path / "lab"), "--channel", "0", "--dead-channel", "1",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"live/dead: {s.calls_right} of {drawn} drawn nuclei called as the reference calls them" in printed
    assert f"{dead} dead by mean dead stain > 3 x its median" in printed
    total = json.loads(out.read_text())["total"]
    assert (total["calls"], total["drawn_dead"], total["live_dead_right"]) == (drawn, dead, round(s.live_dead_right, 6))
    assert main(["evaluate", str(tmp_path / "im"), str(tmp_path / "lab"), "--channel", "1", "--dead-channel", "1"]) == 2
    assert "--dead-channel '1' is the nuclear stain's --channel too" in capsys.readouterr().err


def test_evaluate_pairs_names_the_label_file(tmp_path):
    import tifffile

    from livedead_gpu.evaluate import evaluate_pairs

    f = synthetic.make_frame((64, 64), n_cells=2, seed=0)
    tifffile.imwrite(tmp_path / "a.tif", f.hoechst)
    tifffile.imwrite(tmp_path / "a_mask.tif", f.nuclei[:50])
    with pytest.raises(ValueError, match=r"label file .*a_mask.tif' has shape \(50, 64\), its image .*a.tif' "
                                         r"\(64, 64\)"):
        evaluate_pairs([(tmp_path / "a.tif", tmp_path / "a_mask.tif")])
    tifffile.imwrite(tmp_path / "a_mask.tif", f.nuclei.astype(np.float32) / 2)
    with pytest.raises(ValueError, match=r"label image .*a_mask.tif' holds float32 values that are not ids"):
        evaluate_pairs([(tmp_path / "a.tif", tmp_path / "a_mask.tif")])
    with pytest.raises(ValueError, match="iou_threshold"):   # refused before any image is segmented
        evaluate_pairs([(tmp_path / "missing.tif", tmp_path / "a_mask.tif")], iou_threshold=0)


def test_scores_as_dict_keeps_enough_places_to_round_once():
    # Printed to 3 places from these: rounded to 4 first, Coelho gnf's 0.917526 came out 0.917.
    s = Scores(tp=445, fp=53, fn=27, iou_sum=0.0, pixel_inter=0, pixel_union=0, images=1)
    assert f"{s.as_dict()['f1']:.3f}" == f"{s.f1:.3f}" == "0.918"


def test_segment_nuclei_sets_alignment_padding_aside():
    f = synthetic.make_frame((384, 384), n_cells=30, seed=3)
    padded = np.zeros_like(f.hoechst)
    padded[:, 100:] = f.hoechst[:, 100:]   # a quarter of the frame 0: the noise read 0 before
    got = segment_nuclei(padded)
    assert not got[:, :100].any()
    # segmented as segment_frame segments it: with one line of the zeros (checks.box_inside)
    assert np.array_equal(got[:, 99:], segment_nuclei(padded[:, 99:]))
    truth = f.nuclei.copy()
    truth[:, :100] = 0
    assert match_instances(truth, got).f1 >= 0.9


def test_find_pairs_as_users_name_their_files(tmp_path):
    import tifffile

    im, lab = tmp_path / "im", tmp_path / "lab"
    im.mkdir()
    lab.mkdir()
    zeros = np.zeros((8, 8), np.uint16)
    for name in ("Img1.TIF", "c.ome.tif", "d.tif", "._d.tif"):
        tifffile.imwrite(im / name, zeros)
    for name in ("img1_mask.tif", "c_mask.ome.tif", "d_labels.tif", "._d_labels.tif", "e_labels.tif"):
        tifffile.imwrite(lab / name, zeros)
    (im / "._Img1.TIF").write_bytes(b"\0\5\26\7")   # macOS's AppleDouble: no TIFF
    with pytest.warns(UserWarning, match=r"not read, no image in .*im': 1 file \(e_labels.tif\) in .*lab'"):
        pairs = find_pairs(im, lab)
    # any case, an OME-TIFF's .ome left out, hidden files skipped
    assert [(i.name, l.name) for i, l in pairs] == [("c.ome.tif", "c_mask.ome.tif"), ("d.tif", "d_labels.tif"),
                                                   ("Img1.TIF", "img1_mask.tif")]
    (lab / "e_labels.tif").unlink()
    tifffile.imwrite(im / "f.tif", zeros)
    with pytest.warns(UserWarning, match=r"not scored, no label file in .*lab': 1 file \(f.tif\) in .*im'"):
        find_pairs(im, lab)
    # a JPEG label file: lossy, refused
    import cv2

    cv2.imwrite(str(lab / "f_mask.jpg"), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="label file .*f_mask.jpg' is a JPEG"):
        find_pairs(im, lab)
    # no pair: what was found and the names tried
    with pytest.raises(ValueError, match="no image in .* images c.ome.tif, d.tif, f.tif, Img1.TIF; labels no image "
                                         "files; .* _labels, .*_mask"):
        find_pairs(im, tmp_path)
    with pytest.raises(NotADirectoryError, match="labels .*d_labels.tif' is a file; expected a folder"):
        find_pairs(im, lab / "d_labels.tif")


def test_a_binary_mask_is_read_as_its_objects(tmp_path):
    import tifffile

    # 0/255 masks are common: one "object" of every nucleus had scored F1 0
    f = synthetic.make_frame((128, 128), n_cells=8, seed=0)
    tifffile.imwrite(tmp_path / "a.tif", f.hoechst)
    apart = f.nuclei * ~(scipy.ndimage.grey_dilation(f.nuclei, size=3) != scipy.ndimage.grey_erosion(f.nuclei, size=3))
    tifffile.imwrite(tmp_path / "a_labels.tif", apart)
    truth = evaluate_pairs([(tmp_path / "a.tif", tmp_path / "a_labels.tif")])
    for mask, value in ((np.uint8(apart > 0) * 255, 255), (apart > 0, 1)):   # 0/255, and a 1-bit TIFF
        tifffile.imwrite(tmp_path / "a_labels.tif", mask)
        with pytest.warns(UserWarning, match=rf"a_labels.tif' holds one value \({value}\) on \d+ separate objects"):
            binary = evaluate_pairs([(tmp_path / "a.tif", tmp_path / "a_labels.tif")])
        assert truth.tp + truth.fn > 5 and (binary.tp, binary.fn, binary.fp) == (truth.tp, truth.fn, truth.fp)
    # one object is one object, no warning
    one = np.zeros((128, 128), np.uint8)
    one[10:20, 10:20] = 1
    tifffile.imwrite(tmp_path / "a_labels.tif", one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_pairs([(tmp_path / "a.tif", tmp_path / "a_labels.tif")]).tp + 1 >= 1


def test_scores_at_every_iou_of_the_dsb_score():
    from livedead_gpu.evaluate import IOU_STEPS

    truth = np.zeros((30, 40), np.int32)
    found = np.zeros_like(truth)
    truth[0:10, 0:10], found[0:10, 0:10] = 1, 1          # IoU 1.0
    truth[12:22, 0:10], found[12:22, 0:6] = 2, 2          # IoU 0.6
    truth[0:10, 12:22], found[0:10, 12:20] = 3, 3         # IoU 0.8
    truth[12:22, 12:22], found[12:22, 12:16] = 4, 4       # IoU 0.4: unmatched at 0.5
    found[25:28, 30:33] = 9                               # extra
    ious = [1.0, 0.6, 0.8]
    for threshold in (0.5, 0.7, 0.3):
        s = match_instances(truth, found, threshold)
        assert s.tp_at == tuple(sum(v >= t - 1e-9 for v in ious) for t in IOU_STEPS)   # whatever the threshold
        assert s.tp == sum(v >= threshold for v in ious + [0.4])
    s = match_instances(truth, found)
    assert s.f1_at(0.5) == s.f1 == 2 * 3 / (4 + 5) and s.f1_at(0.75) == 2 * 2 / 9 and s.f1_at(0.9) == 2 / 9
    assert s.mean_ap == pytest.approx(np.mean([tp / (4 + 5 - tp) for tp in s.tp_at]))
    both = s + s
    assert both.tp_at == tuple(2 * n for n in s.tp_at) and both.mean_ap == pytest.approx(s.mean_ap)
    assert s.as_dict()["f1_at_iou"]["0.75"] == round(4 / 9, 6)


def test_scores_sum_and_the_iou_option(capsys):
    from livedead_gpu.cli import main

    a = match_instances(np.array([[1, 0]]), np.array([[1, 0]]))
    b = match_instances(np.array([[0, 2]]), np.array([[0, 0]]))
    assert sum([a, b]) == a + b and (sum([a, b]).tp, sum([a, b]).fn) == (1, 1)
    assert main(["evaluate", "x", "y", "--iou", "1.5"]) == 2
    assert "--iou must be in (0, 1], got 1.5" in capsys.readouterr().err


def test_a_diameter_flag_replaces_the_configs_in_either_unit(tmp_path):
    import json

    import tifffile

    from livedead_gpu.cli import main

    f = synthetic.make_frame((64, 64), n_cells=3, seed=0)
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    tifffile.imwrite(tmp_path / "im" / "a.tif", f.hoechst)
    tifffile.imwrite(tmp_path / "lab" / "a.tif", f.nuclei)
    config = tmp_path / "p.toml"
    config.write_text("pixel_size = 0.5\nnucleus_diameter = 5.0\n")
    out = tmp_path / "s.json"
    assert main(["-q", "evaluate", str(tmp_path / "im"), str(tmp_path / "lab"), "--config", str(config),
                 "--nucleus-diameter-px", "12", "--json", str(out)]) == 0
    params = json.loads(out.read_text())["params"]
    assert (params["nucleus_diameter_px"], params["nucleus_diameter"], params["pixel_size"]) == (12.0, None, 0.5)
