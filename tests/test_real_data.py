"""Checks on the real public images in ../shared/data (skipped when absent)."""

import json

import pytest
import tifffile

from livedead_gpu.stages import cell_area


def adcc_fields(adcc_dir):
    for path in sorted((adcc_dir / "images").glob("*.tif")):
        channels = json.loads(path.with_suffix(".json").read_text())["channels"]
        image = tifffile.imread(path)
        labels = tifffile.imread(adcc_dir / "labels_target_nuclei" / f"{path.stem}_labelled.tif")
        yield path.stem, image[channels.index("brightfield_channel")], labels > 0


# The two fields with open background (the others are confluent monolayers, one of
# them, Aligned_after_1_MMStack_6, wall to wall: the article's own code covers 99.3%).
WITH_BACKGROUND = ("feb_502_snap_2_2_35", "nkratio_502_snap_0_3_15")


@pytest.mark.data
def test_adcc_cell_area_holds_the_nuclei(adcc_dir):
    """On every ADCC field the cell area holds >= 95% of the hand-drawn nucleus pixels,
    and open background stays background (the article's code finds an empty area in 4 of 8)."""
    import article

    fields = list(adcc_fields(adcc_dir))
    assert len(fields) == 8
    article_empty = 0
    for name, brightfield, nuclei in fields:
        mask = cell_area(brightfield).mask
        assert mask[nuclei].mean() >= 0.95, name
        if name in WITH_BACKGROUND:
            assert mask.mean() <= 0.9, name  # 0.84 measured; ~0.8 by eye
        article_empty += article.article_cell_area(brightfield).mean() < 0.02
    assert article_empty >= 4


@pytest.mark.data
def test_coelho_shifted_into_16_bits_segments_as_the_8_bit_images(coelho_dir):
    """12-bit-camera-like data (the 8-bit images x16 in uint16) scores as the originals: the noise
    floors are one grey step of the data (F1 0.266 when they were one unit; 0.898 both now)."""
    import bench_robust

    scores = bench_robust.main(["--data", str(coelho_dir.parent), "16-bit, x16"])["16-bit, x16"]
    assert scores.f1 >= 0.85
