import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedead_gpu.stages import block_max_threshold, threshold_value


def loop_reference(image, offset, coarseness):
    """The article's loop, typos fixed, votes in int64."""
    votes = np.zeros(2**16, dtype=np.int64)
    for r in range(0, image.shape[0], coarseness):
        for c in range(0, image.shape[1], coarseness):
            votes[image[r : r + coarseness, c : c + coarseness].max()] += 1
    k = int(np.argmax(votes[1:])) + 1
    return k if offset is None else int(offset * (abs(k - 1) + 1) + 1)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.integers(1, 90),
    cols=st.integers(1, 90),
    coarseness=st.integers(1, 40),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    high=st.integers(1, 65535),
    offset=st.sampled_from([None, 1.0, 1.1, 1.2, 2.5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_loop_reference(rows, cols, coarseness, dtype, high, offset, seed):
    coarseness = min(coarseness, rows, cols)
    high = min(high, np.iinfo(dtype).max)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, high + 1, (rows, cols)).astype(dtype)
    assert block_max_threshold(image, offset, coarseness) == loop_reference(image, offset, coarseness)


@pytest.mark.parametrize("shape", [(2048, 2048), (1000, 1030), (517, 259)])
@pytest.mark.parametrize("coarseness", [7, 16, 32])
def test_large_images_with_partial_blocks(shape, coarseness):
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 300, shape).astype(np.uint16)
    assert block_max_threshold(image, 1.2, coarseness) == loop_reference(image, 1.2, coarseness)


def test_partial_edge_blocks_vote():
    # 20x20 with c=16: one full block and three partial ones. The partial blocks
    # carry the majority maximum, so ignoring them would change the answer.
    image = np.zeros((20, 20), np.uint8)
    image[0, 0] = 9
    image[18, 0] = image[0, 18] = image[18, 18] = 4
    assert block_max_threshold(image, None, 16) == 4


def test_votes_do_not_overflow_at_65536_blocks():
    # 70,000 blocks with maximum 5 and 60,000 with maximum 7: a uint16 histogram
    # wraps 70,000 to 4,464 and picks 7.
    image = np.full((1000, 130), 7, np.uint16)
    image.ravel()[:70_000] = 5
    assert block_max_threshold(image, None, 1) == 5


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_constant_and_zero_images(dtype):
    assert block_max_threshold(np.zeros((40, 40), dtype), None, 16) == 1
    assert block_max_threshold(np.full((40, 40), 9, dtype), None, 16) == 9
    assert block_max_threshold(np.full((40, 40), 9, dtype), 1.2, 16) == 11


def test_threshold_value_is_the_articles_formula():
    assert threshold_value(5, None) == 5
    assert threshold_value(5, 1.2) == int(1.2 * 5 + 1)
    assert threshold_value(1, 1.2) == 2


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.uint32, np.int64])
def test_other_integer_dtypes_are_converted(dtype):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 3000, (64, 64))
    expected = block_max_threshold(image.astype(np.uint16), 1.2, 8)
    assert block_max_threshold(image.astype(dtype), 1.2, 8) == expected


def test_out_of_range_integers_and_floats_are_refused():
    with pytest.raises(ValueError, match=r"\[-1, "):
        block_max_threshold(np.full((32, 32), -1, np.int32), 1.2, 16)
    with pytest.raises(TypeError, match="float32"):
        block_max_threshold(np.zeros((32, 32), np.float32), 1.2, 16)


def test_image_smaller_than_one_block_is_refused():
    with pytest.raises(ValueError, match="coarseness"):
        block_max_threshold(np.zeros((10, 40), np.uint8), 1.2, 16)
    with pytest.raises(ValueError, match="coarseness"):
        block_max_threshold(np.zeros((40, 40), np.uint8), 1.2, 0)
