import dataclasses

import pytest

from livedead_gpu import SegmentParams


def test_article_defaults():
    p = SegmentParams()
    assert (p.offset, p.dilations, p.erosions, p.kernel_size) == (1.2, 2, 2, 5)
    # Where the article's method measured worse on real images, the default differs.
    assert (p.cell_threshold, p.nucleus_threshold, p.dead_call) == ("noise", "contrast", "ratio")
    article = SegmentParams.from_preset("article")
    assert (article.cell_threshold, article.nucleus_threshold, article.dead_call) == ("block-max", "block-max", "touch")
    assert (article.smoothing, article.gradient_levels, article.min_nucleus_area) == (0.0, None, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.offset = 1.1


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("offset", 0.5, r"offset must lie in \[1.0, 10.0\], got 0.5"),
        ("offset", float("nan"), "offset"),
        ("coarseness", 0, r"coarseness must lie in \[2, 1024\], got 0"),
        ("coarseness", -16, "coarseness"),
        ("kernel_size", 4, "kernel_size must be odd"),
        ("kernel_size", 1, r"kernel_size must lie in \[3, 99\]"),
        ("dilations", -1, "dilations"),
        ("erosions", 51, "erosions"),
        ("gradient_levels", 8, "gradient_levels"),
        ("nucleus_threshold", "otsu", "nucleus_threshold must be 'block-max' or an int"),
        ("nucleus_threshold", 70000, "nucleus_threshold"),
        ("nucleus_kernel", 0, "nucleus_kernel"),
        ("min_nucleus_area", -5, r"min_nucleus_area must lie in \[0, 1000000\], got -5"),
        ("nucleus_edge", 1.0, r"nucleus_edge must lie in \[0.0, 0.95\], got 1.0"),
        ("bleed", "fit", r"bleed must be 'auto' or a number in \[0, 1\], got 'fit'"),
        ("bleed", 1.5, r"bleed must lie in \[0.0, 1.0\], got 1.5"),
        ("bleed", -0.01, "bleed"),
        ("draq7_background", "median", "draq7_background must be 'local' or 'field', got 'median'"),
        ("nucleus_smoothing", 11, r"nucleus_smoothing must lie in \[0.0, 10.0\], got 11"),
        ("draq7_dark", -1.0, r"draq7_dark must lie in \[0.0, 65535.0\], got -1.0"),
        ("draq7_dark", 70000, "draq7_dark"),
        ("nucleus_smoothing", -1.0, "nucleus_smoothing"),
        ("nucleus_smoothing", "on", r"nucleus_smoothing must be 'auto' or a number in \[0.0, 10.0\], got 'on'"),
    ],
)
def test_invalid_values_name_the_parameter(name, value, match):
    with pytest.raises(ValueError, match=match):
        SegmentParams(**{name: value})


@pytest.mark.parametrize("size, diameter", [(0.001, 1000.0), (0.01, 100.0), (10.0, 20.0)])
def test_a_diameter_in_um_is_held_to_the_pixel_range(size, diameter):
    # each value in its own range, the two asked for nuclei of 10**6 px (an OpenCV allocation error)
    with pytest.raises(ValueError, match=r"nucleus_diameter / pixel_size must be 3 to 2000 px .*got"):
        SegmentParams(pixel_size=size, nucleus_diameter=diameter)
    assert SegmentParams(pixel_size=0.65, nucleus_diameter=10.0).diameter_px == pytest.approx(10 / 0.65)


@pytest.mark.parametrize("name, value", [("coarseness", 16.0), ("dilations", True), ("offset", "1.2"),
                                         ("bleed", True)])
def test_wrong_types(name, value):
    with pytest.raises(TypeError, match=name):
        SegmentParams(**{name: value})


def test_toml_round_trip(tmp_path):
    p = SegmentParams(offset=None, coarseness=8, nucleus_threshold=300, gradient_levels=None)
    path = tmp_path / "p.toml"
    for q in (p, SegmentParams(bleed=0.04)):
        path.write_text(q.to_toml())
        assert SegmentParams.from_toml(path) == q
    assert p.digest() != SegmentParams().digest()


@pytest.mark.parametrize("given, same", [
    ({"offset": 1}, {"offset": 1.0}),
    ({"smoothing": -0.0}, {"smoothing": 0.0}),
    ({"nucleus_diameter_px": 12, "dead_ratio": 3}, {"nucleus_diameter_px": 12.0, "dead_ratio": 3.0}),
    ({"pixel_size": 1, "nucleus_diameter": 10}, {"pixel_size": 1.0, "nucleus_diameter": 10.0}),
    ({"bleed": 0}, {"bleed": 0.0}),
])
def test_equal_params_have_one_digest(given, same):
    # offset=1 and offset=1.0 compared equal but hashed apart (JSON "1" vs "1.0"): a --config
    # with "smoothing = 1" redid every frame a run with the defaults had done
    a, b = SegmentParams(**given), SegmentParams(**same)
    assert a == b and a.digest() == b.digest() and a.to_toml() == b.to_toml()
    assert all(type(getattr(a, k)) is float for k in given)


def test_the_preset_label_is_not_in_the_digest():
    # "measured" holds the defaults' values: the label alone made a resumed export redo its frames
    measured = SegmentParams.from_preset("measured")
    assert measured.preset == "measured" and measured.digest() == SegmentParams().digest()
    assert SegmentParams.from_preset("article").digest() != SegmentParams().digest()


def test_numpy_scalars_are_taken_as_python_numbers():
    import numpy as np

    # np.float64 passed but np.float32, np.int64 (a value from an array) and np.bool_ were refused
    p = SegmentParams(coarseness=np.int64(8), smoothing=np.float32(0.5), offset=np.int32(2),
                      nucleus_threshold=np.uint16(300), split_nuclei=np.bool_(False))
    q = SegmentParams(coarseness=8, smoothing=0.5, offset=2.0, nucleus_threshold=300, split_nuclei=False)
    assert p == q and p.digest() == q.digest()
    assert [type(getattr(p, k)) for k in ("coarseness", "smoothing", "nucleus_threshold", "split_nuclei")] == \
        [int, float, int, bool]
    for name, value in (("coarseness", np.float64(8)), ("dilations", np.bool_(True)), ("split_nuclei", 1)):
        with pytest.raises(TypeError, match=name):
            SegmentParams(**{name: value})


def test_a_preset_that_is_no_name_is_named(tmp_path):
    # preset = ["article"] failed with the bare "unhashable type: 'list'", naming nothing
    path = tmp_path / "p.toml"
    path.write_text('preset = ["article"]\n')
    with pytest.raises(ValueError, match=r"p.toml: preset must be one of .*got \['article'\]"):
        SegmentParams.from_toml(path)
    with pytest.raises(ValueError, match="preset must be one of"):
        SegmentParams.from_preset(["article"])
    with pytest.raises(ValueError, match="preset must be one of"):
        SegmentParams(preset={})


@pytest.mark.parametrize("text, error, match", [
    ("coarsenes = 8\n", ValueError, r"bad.toml: unknown parameter\(s\) coarsenes"),
    ("coarseness = [\n", ValueError, "not valid TOML"),
    ("[segment]\ncoarseness = 1\n", ValueError, r"bad.toml: coarseness must lie in \[2, 1024\], got 1"),
    ('coarseness = "x"\n', TypeError, r"bad.toml: coarseness must be an int"),
    # the top-level coarseness used to be dropped without a word
    ("coarseness = 8\n[segment]\nkernel_size = 7\n", ValueError,
     r"bad.toml: parameter\(s\) coarseness outside the \[segment\] table"),
    ("segment = 3\n", ValueError, r"bad.toml: segment must be a table \(\[segment\]\), got 3"),
])
def test_toml_errors(tmp_path, text, error, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(error, match=match):
        SegmentParams.from_toml(path)


def test_missing_toml_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        SegmentParams.from_toml(tmp_path / "missing.toml")


def test_toml_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "notepad.toml"
    path.write_bytes(b"\xef\xbb\xbfcoarseness = 8\n")     # Windows Notepad's UTF-8
    assert SegmentParams.from_toml(path).coarseness == 8


def test_toml_unreadable_file_is_named(tmp_path):
    path = tmp_path / "p.toml"
    path.write_bytes(b"\xff\xfe coarseness = 8\n")
    with pytest.raises(ValueError, match=r"parameter file '.*p.toml' is not valid TOML"):
        SegmentParams.from_toml(path)
    with pytest.raises(OSError, match=r"parameter file '.*' is a folder"):
        SegmentParams.from_toml(tmp_path)


@pytest.mark.parametrize("name, sign, digits, lo_hi", [
    ("smoothing", 1, 401, r"\[0.0, 10.0\]"),
    ("offset", -1, 401, r"\[1.0, 10.0\]"),
    ("coarseness", 1, 4001, r"\[2, 1024\]"),
    ("nucleus_diameter_px", 1, 21, r"\[3.0, 2000.0\]"),
])
def test_huge_integers_name_the_parameter(tmp_path, name, sign, digits, lo_hi):
    # math.isfinite(10**400) raised OverflowError: a traceback naming no parameter
    shown = f"{'a negative' if sign < 0 else 'an'} integer of about {digits} digits"
    with pytest.raises(ValueError, match=rf"^{name} must lie in {lo_hi}, got {shown}$"):
        SegmentParams(**{name: sign * 10 ** (digits - 1)})
    path = tmp_path / "huge.toml"
    path.write_text(f"{name} = {'-' if sign < 0 else ''}1{'0' * (digits - 1)}\n")
    with pytest.raises(ValueError, match=rf"huge.toml: {name} must lie in {lo_hi}, got {shown}$"):
        SegmentParams.from_toml(path)
    path.write_text(f"{name} = 1{'0' * 5000}\n")   # past int's str limit, which tomllib raises on
    with pytest.raises(ValueError, match=r"huge.toml' is not valid TOML: .*4300 digits"):
        SegmentParams.from_toml(path)
    with pytest.raises(ValueError, match=rf"{name} must lie in {lo_hi}, got an integer of about 5001 digits"):
        SegmentParams(**{name: 10**5000})     # str() of it would raise


def test_a_diameter_in_um_and_in_px_is_refused():
    # the µm one silently won over the px one
    with pytest.raises(ValueError, match=r"nucleus_diameter \(µm\) or nucleus_diameter_px, not both; "
                                         r"got nucleus_diameter=10.0 and nucleus_diameter_px=200.0"):
        SegmentParams(pixel_size=0.5, nucleus_diameter=10.0, nucleus_diameter_px=200.0)
    with pytest.raises(ValueError, match="not both"):
        SegmentParams(pixel_size=0.5, nucleus_diameter=10.0, nucleus_diameter_px=20.0)   # even agreeing
    for p in (SegmentParams(pixel_size=0.5, nucleus_diameter=10.0), SegmentParams(nucleus_diameter_px=20.0),
              SegmentParams(pixel_size=0.5, nucleus_diameter_px=20.0)):
        assert SegmentParams.from_dict(p.to_dict()) == p and p.diameter_px == 20.0
