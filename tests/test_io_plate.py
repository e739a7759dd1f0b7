"""Plate discovery and lazy reading: Gen5/Cytation, ImageXpress, TCYX stacks, user regexes."""

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from livedead_gpu import synthetic
from livedead_gpu.io import FrameKey, PlateError, open_plate, parse_channel_map

GEN5_NAMES = {"brightfield": "Bright Field", "hoechst": "DAPI", "draq7": "Cy5"}
# small synthetic frames cannot always place every cell; that is fine here
pytestmark = pytest.mark.filterwarnings("ignore:placed .* cells:UserWarning")
ROLES = ("brightfield", "hoechst", "draq7")


def small_plate(wells=("B2", "C3"), sites=1, n_times=2, size=64, seed=0):
    return synthetic.make_plate(wells=wells, sites=sites, n_times=n_times, shape=(size, size),
                                n_cells=3, seed=seed)


def channels(frame):
    return {"brightfield": frame.brightfield, "hoechst": frame.hoechst, "draq7": frame.draq7}


def write_gen5(root, plate, style="old", names=GEN5_NAMES, pixel_size=None):
    """Gen5/Cytation single-channel files; site and time numbered from 1 in the names."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    kw = {}
    if pixel_size:
        kw = {"resolution": (1e4 / pixel_size, 1e4 / pixel_size), "resolutionunit": "CENTIMETER"}
    for (well, site, t), frame in plate.items():
        for c, (role, image) in enumerate(channels(frame).items(), 1):
            name = names[role]
            if style == "old":
                fn = f"{well}_02_{c}_{site + 1}_{name}_{t + 1:03d}.tif"
            else:
                fn = f"{well}_02_SP{site + 1}Z1_C{c}_{name}_T{t + 1:03d}.tif"
            tifffile.imwrite(root / fn, image, **kw)
    return root


def write_imagexpress(root, plate, prefix="", sites=True):
    root = Path(root)
    for (well, site, t), frame in plate.items():
        folder = root / f"TimePoint_{t + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        wx = f"{well[0]}{int(well[1:]):02d}"
        s = f"_s{site + 1}" if sites else ""
        for c, image in enumerate(channels(frame).values(), 1):
            tifffile.imwrite(folder / f"{prefix}{wx}{s}_w{c}.tif", image)
    return root


def write_stacks(root, plate, kind="ome", names=("Bright Field", "DAPI", "Cy5"), pixel_size=0.65):
    """One (T, C, Y, X) stack per well/site."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    by_pos = {}
    for (well, site, t), frame in sorted(plate.items()):
        by_pos.setdefault((well, site), []).append(np.stack(list(channels(frame).values())))
    for (well, site), frames in by_pos.items():
        data = np.stack(frames)
        if kind == "ome":
            meta = {"axes": "TCYX", "Channel": {"Name": list(names)}, "PhysicalSizeX": pixel_size,
                    "PhysicalSizeY": pixel_size}
            tifffile.imwrite(root / f"{well}_s{site}.ome.tif", data, ome=True, metadata=meta,
                             compression="zlib")
        elif kind == "imagej":
            meta = {"axes": "TCYX", "Labels": list(names) * len(frames), "unit": "um"}
            tifffile.imwrite(root / f"{well}_s{site}.tif", data, imagej=True, metadata=meta,
                             resolution=(1 / pixel_size, 1 / pixel_size))
        else:  # plain multi-page, no metadata: channel order by default
            tifffile.imwrite(root / f"{well}_s{site}.tif", data, metadata=None, photometric="minisblack")
    return root


@pytest.fixture(scope="module")
def plate():
    return small_plate()


def check_frames(p, plate, key_of):
    assert len(p) == len(plate)
    for k, frame in plate.items():
        got = p.read(key_of(k))
        for role in ROLES:
            np.testing.assert_array_equal(getattr(got, role), getattr(frame, role))
        assert got.stack().shape == (3, 64, 64)


@pytest.mark.parametrize("style", ["old", "new"])
def test_gen5_discovery_and_reading(tmp_path, plate, style):
    root = write_gen5(tmp_path / "p", plate, style, pixel_size=0.65)
    tifffile.imwrite(root / "notes.tif", np.zeros((4, 4), np.uint8))   # not a plate file
    p = open_plate(root)
    assert p.layout == "gen5" and not p.problems
    assert p.keys() == sorted(FrameKey(w, s + 1, t + 1) for w, s, t in plate)
    assert p.wells == ["B2", "C3"]
    assert [q.name for q in p.ignored] == ["notes.tif"]
    check_frames(p, plate, lambda k: FrameKey(k[0], k[1] + 1, k[2] + 1))
    f = p.read(("B2", 1, 1))
    assert f.channel_names == GEN5_NAMES
    assert f.pixel_size == pytest.approx(0.65)
    assert "DAPI_" in f.sources["hoechst"] and f.sources["hoechst"].endswith("001.tif")


def test_imagexpress_timepoint_folders(tmp_path, plate):
    root = write_imagexpress(tmp_path / "ix", plate)
    p = open_plate(root)
    assert p.layout == "imagexpress" and not p.problems
    assert p.keys()[0] == FrameKey("B02", 1, 1)
    check_frames(p, plate, lambda k: FrameKey(f"{k[0][0]}0{k[0][1]}", k[1] + 1, k[2] + 1))
    assert p.read(("B02", 1, 1)).channel_names == {"brightfield": "w1", "hoechst": "w2", "draq7": "w3"}


def test_imagexpress_names_with_the_plate_and_without_sites(tmp_path, plate):
    # MetaXpress: <plate>_<well>_s<site>_w<n>.TIF, and no _s<site> in one-site wells
    p = open_plate(write_imagexpress(tmp_path / "ix", plate, prefix="Plate_1_2024_"))
    assert p.layout == "imagexpress" and not p.problems
    check_frames(p, plate, lambda k: FrameKey(f"{k[0][0]}0{k[0][1]}", k[1] + 1, k[2] + 1))
    one_site = {k: f for k, f in plate.items() if k[1] == 0}
    p = open_plate(write_imagexpress(tmp_path / "one", one_site, prefix="P1_", sites=False))
    check_frames(p, one_site, lambda k: FrameKey(f"{k[0][0]}0{k[0][1]}", 0, k[2] + 1))


def test_imagexpress_channel_map_override(tmp_path, plate):
    root = write_imagexpress(tmp_path / "ix", plate)
    # say the wavelengths were acquired as Hoechst, Draq7, brightfield
    p = open_plate(root, channel_map=["w2=draq7", "w3=brightfield", "w1=hoechst"])
    f = p.read(("B02", 1, 1))
    frame = plate[("B2", 0, 0)]
    np.testing.assert_array_equal(f.hoechst, frame.brightfield)
    np.testing.assert_array_equal(f.draq7, frame.hoechst)
    np.testing.assert_array_equal(f.brightfield, frame.draq7)


@pytest.mark.parametrize("kind", ["ome", "imagej", "plain"])
def test_stacks(tmp_path, plate, kind):
    root = write_stacks(tmp_path / "st", plate, kind)
    p = open_plate(root)
    assert p.layout == "stack"
    assert p.keys() == sorted(FrameKey(*k) for k in plate)
    check_frames(p, plate, lambda k: FrameKey(*k))
    f = p.read(("C3", 0, 1))
    if kind == "plain":
        assert f.channel_names == {"brightfield": "0", "hoechst": "1", "draq7": "2"}
        assert f.pixel_size is None
    else:
        assert f.channel_names == GEN5_NAMES
        assert f.pixel_size == pytest.approx(0.65, rel=1e-3)


def test_stack_channels_by_name_in_any_order(tmp_path, plate):
    sub = {k: v for k, v in plate.items() if k[0] == "B2"}
    root = tmp_path / "st"
    root.mkdir()
    data = np.stack([np.stack([f.draq7, f.brightfield, f.hoechst]) for _, f in sorted(sub.items())])
    tifffile.imwrite(root / "B2.ome.tif", data, ome=True,
                     metadata={"axes": "TCYX", "Channel": {"Name": ["Draq7", "BF", "Hoechst"]}})
    p = open_plate(root / "B2.ome.tif")           # a single stack file is a plate too
    f = p.read(("B2", 0, 1))
    np.testing.assert_array_equal(f.hoechst, plate[("B2", 0, 1)].hoechst)
    np.testing.assert_array_equal(f.draq7, plate[("B2", 0, 1)].draq7)


def test_stack_channel_roles_named_mapped_or_refused(tmp_path, plate):
    # Named channels no map knows had fallen back to the default order (Draq7 read as the
    # brightfield), and an index map lost to the names it was meant to override.
    sub = {k: v for k, v in plate.items() if k[0] == "B2"}
    data = np.stack([np.stack([f.draq7, f.hoechst, f.brightfield]) for _, f in sorted(sub.items())])
    root = tmp_path / "st"
    root.mkdir()

    def write(names):
        tifffile.imwrite(root / "B2.ome.tif", data, ome=True, metadata={"axes": "TCYX", "Channel": {"Name": names}})
        return root / "B2.ome.tif"

    truth = plate[("B2", 0, 1)]
    f = open_plate(write(["Draq7 640", "Hoechst 405", "Bright Field"])).read(("B2", 0, 1))   # known names in front
    np.testing.assert_array_equal(f.draq7, truth.draq7)
    np.testing.assert_array_equal(f.brightfield, truth.brightfield)
    with pytest.raises(PlateError, match=r"no brightfield channel among \['Draq7 640', 'Hoechst 405', 'Trans'\]"):
        open_plate(write(["Draq7 640", "Hoechst 405", "Trans"]))
    with pytest.raises(PlateError, match=r"no brightfield/hoechst/draq7 channel among \['a', 'b', 'c'\]"):
        open_plate(write(["a", "b", "c"]))
    f = open_plate(write(["Draq7 640", "Hoechst 405", "Trans"]), channel_map=["Trans=brightfield"]).read(("B2", 0, 1))
    np.testing.assert_array_equal(f.brightfield, truth.brightfield)
    # by index, over the names' defaults ("BF" is channel 0's name, but the map says draq7)
    f = open_plate(write(["BF", "DAPI", "Cy5"]), channel_map=["0=draq7", "2=brightfield"]).read(("B2", 0, 1))
    np.testing.assert_array_equal(f.draq7, truth.draq7)
    np.testing.assert_array_equal(f.brightfield, truth.brightfield)
    assert open_plate(write(["BFP", "DAPI", "Draq7"]), channel_map=["BFP=brightfield"]).roles(("B2", 0, 0)) \
        == {"brightfield": 0, "hoechst": 1, "draq7": 2}


def test_fijis_micrometre_unit_gives_the_pixel_size(tmp_path, plate):
    # Fiji writes µm as the text "\u00B5m"; lowercased it had matched nothing: no pixel size
    frames = [np.stack(list(channels(f).values())) for k, f in sorted(plate.items()) if k[0] == "B2"]
    path = tmp_path / "B2.tif"
    tifffile.imwrite(path, np.stack(frames), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "TCYX", "unit": "\\u00B5m"})
    assert open_plate(path).read(("B2", 0, 0)).pixel_size == pytest.approx(0.325, rel=1e-3)


def test_stacks_missing_planes_are_refused_at_discovery_and_previews_left_out(tmp_path):
    import struct

    names = {"Channel": {"Name": ["BF", "DAPI", "Cy5"]}}
    preview = tmp_path / "preview"
    preview.mkdir()
    with tifffile.TiffWriter(preview / "B2.tif") as tw:   # a stack and its reduced-resolution thumbnail
        tw.write(np.full((3, 16, 16), 7, np.uint16), photometric="minisblack", metadata={"axes": "CYX"})
        tw.write(np.zeros((4, 4), np.uint16), photometric="minisblack", subfiletype=1)
    p = open_plate(preview)
    assert p.keys() == [FrameKey("B2", 0, 0)] and p.read(("B2", 0, 0)).hoechst.shape == (16, 16)
    cut = tmp_path / "cut" / "C3.ome.tif"
    cut.parent.mkdir()
    tifffile.imwrite(cut, np.ones((3, 3, 16, 16), np.uint16), ome=True, metadata={"axes": "TCYX", **names})
    offsets = [page.offset for page in tifffile.TiffFile(cut).pages]
    data = bytearray(cut.read_bytes())   # the chain of pages ends after 7 of the 9 planes
    struct.pack_into("<I", data, offsets[6] + 2 + 12 * struct.unpack_from("<H", data, offsets[6])[0], 0)
    cut.write_bytes(bytes(data))
    with pytest.raises(PlateError, match=r"C3.ome.tif': it holds 7 of the 9 planes"):
        open_plate(cut)


CHANNELS = tuple(GEN5_NAMES.values())


def plane(pos, t, c, shape=(16, 16)):
    """A plane whose every pixel says which position, time point and channel it is."""
    return np.full(shape, 100 * pos + 10 * t + c, np.uint16)


def write_positions(path, positions, thumbnail=False):
    """An OME-TIFF of one image series per position: ``[(name or None, n_times, channel names), ...]``;
    position ``i``'s channel ``c`` holds `plane` (i, t, k), k the role's index (brightfield 0 ...)."""
    with tifffile.TiffWriter(path, ome=True) as tw:
        for i, (name, n_t, chans) in enumerate(positions):
            roles = {name: role for role, name in GEN5_NAMES.items()}
            order = [ROLES.index(roles.get(n, "brightfield")) for n in chans]
            data = np.stack([np.stack([plane(i, t, k) for k in order]) for t in range(n_t)])
            meta = {"axes": "TCYX", "Channel": {"Name": list(chans)}, "PhysicalSizeX": 0.5 + i,
                    "PhysicalSizeY": 0.5 + i, **({"Name": name} if name else {})}
            tw.write(data, metadata=meta)
        if thumbnail:   # a reduced-resolution preview saved as one more series
            tw.write(np.zeros((4, 4), np.uint16), subfiletype=1)
    return path


def check_position(p, key, pos, t):
    f = p.read(key)
    for k, role in enumerate(ROLES):
        np.testing.assert_array_equal(getattr(f, role), plane(pos, t, k))
    return f


def test_an_ome_file_of_several_positions_is_read_site_by_site(tmp_path):
    # Image names give well and site (Micro-Manager's HCS names, B02_s2, a well alone); each
    # position has its own channel order, pixel size and number of time points
    path = write_positions(tmp_path / "plate.ome.tif", [
        ("B2-Site_3", 2, CHANNELS), ("C03_s2", 2, ("Cy5", "Bright Field", "DAPI")), ("D4", 1, CHANNELS)],
        thumbnail=True)
    p = open_plate(tmp_path)
    assert sorted({(k.well, k.site) for k in p.keys()}) == [("B2", 3), ("C03", 2), ("D4", 0)]
    assert set(p.problems) == {FrameKey("D4", 0, 1)}   # one time point where the others have two
    assert "plate.ome.tif[series=2]' holds 1 time point(s), other stacks 2" in p.problems[FrameKey("D4", 0, 1)]
    for pos, (well, site) in enumerate([("B2", 3), ("C03", 2), ("D4", 0)]):
        for t in range(2 if pos < 2 else 1):
            check_position(p, (well, site, t), pos, t)
    f = p.read(("C03", 2, 1))
    assert f.channel_names == {"brightfield": "Bright Field", "hoechst": "DAPI", "draq7": "Cy5"}
    assert f.sources["draq7"] == f"{path}[series=1,t=1,c=0]" and f.sources["brightfield"].endswith("c=1]")
    assert f.pixel_size == pytest.approx(1.5)
    assert p.roles(("C03", 2, 0)) == {"draq7": 0, "brightfield": 1, "hoechst": 2}
    assert p.sources(("B2", 3, 0)) == [path]
    # one such file given alone
    assert open_plate(path).keys() == p.keys()


def test_positions_named_by_no_well_are_sites_of_the_files_well(tmp_path):
    write_positions(tmp_path / "B2.ome.tif", [(None, 1, CHANNELS), ("Pos1", 1, CHANNELS)])
    write_positions(tmp_path / "run 7.ome.tif", [(None, 1, CHANNELS)] * 2)   # no well in the name: its stem
    p = open_plate(tmp_path)
    assert p.keys() == [FrameKey("B2", 0, 0), FrameKey("B2", 1, 0), FrameKey("run 7", 0, 0), FrameKey("run 7", 1, 0)]
    check_position(p, ("B2", 1, 0), 1, 0)
    check_position(p, ("run 7", 0, 0), 0, 0)
    assert p.read(("B2", 1, 0)).sources["hoechst"].endswith("B2.ome.tif[series=1,t=0,c=1]")


def test_two_positions_of_one_well_and_site_are_refused_naming_both(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    write_positions(one / "plate.ome.tif", [("B2-Site_3", 1, CHANNELS)] * 2)
    with pytest.raises(PlateError, match=r"two stacks for well B2 site 3: '.*plate.ome.tif\[series=0\]' and "
                                         r"'.*plate.ome.tif\[series=1\]'"):
        open_plate(one)
    two = tmp_path / "two"
    two.mkdir()
    write_positions(two / "plate.ome.tif", [("B2-Site_3", 1, CHANNELS), ("C3_s1", 1, CHANNELS)])
    write_positions(two / "C3_s1.ome.tif", [(None, 1, CHANNELS)])
    with pytest.raises(PlateError, match=r"two stacks for well C3 site 1: '.*C3_s1.ome.tif' and "
                                         r"'.*plate.ome.tif\[series=1\]'"):
        open_plate(two)


def test_a_position_missing_a_channel_is_its_own_problem_naming_the_series(tmp_path):
    path = write_positions(tmp_path / "B2.ome.tif", [
        ("B2-Site_0", 1, CHANNELS), ("B2-Site_1", 1, ("Bright Field", "DAPI", "Texas Red"))])
    p = open_plate(path)
    assert set(p.problems) == {FrameKey("B2", 1, 0)}
    msg = p.problems[FrameKey("B2", 1, 0)]
    assert "B2.ome.tif' series 1 ('B2-Site_1'): no draq7 channel among ['Bright Field', 'DAPI', 'Texas Red']" in msg
    with pytest.raises(PlateError, match=r"series 1 .*no draq7 channel"):
        p.read(("B2", 1, 0))
    check_position(p, ("B2", 0, 0), 0, 0)
    assert p.sources(("B2", 1, 0)) == [path]
    bad = write_positions(tmp_path / "C3.ome.tif", [(None, 1, ("a", "b", "c"))] * 2)
    with pytest.raises(PlateError, match=r"C3.ome.tif' series 0 \('Image0'\): no brightfield/hoechst/draq7 channel"):
        open_plate(bad)   # nothing reads: an error


def test_an_axis_of_positions_outside_micro_manager_is_refused(tmp_path):
    path = tmp_path / "B2.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 16, 16), np.uint16), metadata={"axes": "RCYX"}, photometric="minisblack")
    with pytest.raises(PlateError, match=r"B2.tif' has axes RCYX .*only T and C may exceed 1 \(got R=2\)"):
        open_plate(path)   # read as the first position alone, the other would be lost


def write_mmstack(path, planes, summary, names=None, pixel_size=0.65):
    """A Micro-Manager multipage TIFF, by its file format as tifffile reads it: ``planes`` are
    ``(c, t, position, image)`` in file order (z 0), ``summary`` its Summary metadata, ``names``
    the positions' names (by index) that each plane's metadata gives as ``PositionName``.

    As Micro-Manager (1.4 and 2.0) writes them: each plane's metadata (tag 51123, JSON) holds
    its indices, ``PositionName`` and ``PixelSizeUm``; the resolution tags give pixels per cm.
    """
    import json
    import struct

    head = json.dumps(summary).encode()
    out = bytearray(b"II*\x00\x00\x00\x00\x00")   # then Micro-Manager's header: its blocks' offsets
    out += struct.pack("<8I", 54773648, 0, 483765892, 0, 99384722, 0, 2355492, len(head)) + head
    per_cm = int(1 / (1e-4 * (pixel_size or 1)))
    index, link = [], 4   # link: where the pointer to the next IFD goes (the header's first)
    for c, t, pos, image in planes:
        out += b"\x00" * (len(out) % 2)
        ifd = len(out)
        data = np.ascontiguousarray(image, "<u2").tobytes()
        meta = {"ChannelIndex": c, "SliceIndex": 0, "Slice": 0, "FrameIndex": t, "Frame": t, "PositionIndex": pos}
        if names is not None:
            meta["PositionName"] = names[pos]
        if pixel_size is not None:
            meta["PixelSizeUm"] = pixel_size
        meta = json.dumps(meta).encode() + b"\x00"
        extra = ifd + 162 + len(data)   # 13 entries, then the pixels (tifffile finds them at IFD + 162)
        entries = [(256, 4, 1, image.shape[1]), (257, 4, 1, image.shape[0]), (258, 3, 1, 16), (259, 3, 1, 1),
                   (262, 3, 1, 1), (273, 4, 1, ifd + 162), (277, 3, 1, 1), (278, 4, 1, image.shape[0]),
                   (279, 4, 1, len(data)), (282, 5, 1, extra), (283, 5, 1, extra + 8), (296, 3, 1, 3),
                   (51123, 2, len(meta), extra + 16)]
        out += struct.pack("<H", len(entries))
        for tag, kind, n, value in entries:
            out += struct.pack("<HHI", tag, kind, n) + struct.pack("<H2x" if kind == 3 else "<I", value)
        next_ifd = len(out)
        out += b"\x00" * 4 + data + struct.pack("<4I", per_cm, 1, per_cm, 1) + meta
        struct.pack_into("<I", out, link, ifd)   # the previous IFD's (or the header's) pointer to this one
        link = next_ifd
        index.append((c, 0, t, pos, ifd))
    for at, header, body in ((12, 3453623, b"".join(struct.pack("<5I", *e) for e in index)),
                             (20, 347834724, b"{}"), (28, 84720485, b"{}")):
        struct.pack_into("<I", out, at, len(out))
        out += struct.pack("<II", header, len(index) if header == 3453623 else len(body)) + body
    Path(path).write_bytes(bytes(out))


def mm_summary(labels, n_t, chans=("BF", "DAPI", "Cy5"), version="2.0", listed=True):
    """Summary metadata as Micro-Manager ``version`` writes it, ``labels`` its positions' names
    (``listed``: in the Summary's position list).

    2.0 (mmstudio PropertyKey / NonPropertyMapJSONFormats.SummaryFormat): the positions under
    ``StagePositions`` (absent without a position list), no pixel size (a plane's own metadata
    gives it). 1.4 (acq_engine.clj make-summary-metadata): under ``InitialPositionList`` (null
    without a position list), ``PixelSize_um``. ``Positions``: their number, in both.
    """
    out = {"Prefix": "exp", "ChNames": list(chans), "Frames": n_t, "Positions": len(labels), "Slices": 1,
           "Channels": len(chans), "TimeFirst": False, "SlicesFirst": True, "PixelType": "GRAY16",
           "Width": 16, "Height": 16}
    if version == "1.4":
        out.update({"MicroManagerVersion": "1.4.23 20170327", "MetadataVersion": 10, "IJType": 1, "BitDepth": 16,
                    "PixelSize_um": 0.65, "Source": "Micro-Manager", "InitialPositionList": None})
        if listed:
            out["InitialPositionList"] = [{"Label": x, "GridRowIndex": 0, "GridColumnIndex": 0,
                                           "DeviceCoordinatesUm": {"XYStage": [100.0 * i, 0.0]}}
                                          for i, x in enumerate(labels)]
        return out
    out.update({"MicroManagerVersion": "2.0.3 20240318", "MetadataVersion": "12.0.0",
                "IntendedDimensions": {"time": n_t, "position": len(labels), "z": 1, "channel": len(chans)}})
    if listed:
        out["StagePositions"] = [{"Label": x, "DefaultXYStage": "XYStage", "DefaultZStage": "Z", "GridRow": 0,
                                  "GridCol": 0, "Properties": {},
                                  "DevicePositions": [{"Device": "XYStage", "Position_um": [100.0 * i, 0.0]}]}
                                 for i, x in enumerate(labels)]
    return out


def mm_planes(pos, n_t, order=(0, 1, 2)):
    return [(c, t, pos, plane(pos, t, k)) for t in range(n_t) for c, k in enumerate(order)]


def test_a_micro_manager_dataset_of_several_files_gives_each_position_once(tmp_path):
    # One file per position, as Micro-Manager saves a multi-position acquisition; tifffile gathers
    # the positions of all of them into one series (axis R) whichever file is opened.
    labels = ["B2-Site_0", "C3-Site_1", "Pos2"]
    summary = mm_summary(labels, 2, chans=("Cy5", "BF", "DAPI"))
    for pos, label in enumerate(labels):
        write_mmstack(tmp_path / f"exp_MMStack_{label}.ome.tif", mm_planes(pos, 2, order=(2, 0, 1)), summary,
                      names=labels)
    p = open_plate(tmp_path)
    assert not p.problems and not p.ignored
    # labels that name no well: the dataset's name, the position's index
    assert p.keys() == sorted(FrameKey(w, s, t) for w, s in [("B2", 0), ("C3", 1), ("exp", 2)] for t in (0, 1))
    for pos, (well, site) in enumerate([("B2", 0), ("C3", 1), ("exp", 2)]):
        for t in (0, 1):
            f = check_position(p, (well, site, t), pos, t)
    assert f.channel_names == {"brightfield": "BF", "hoechst": "DAPI", "draq7": "Cy5"}
    assert f.pixel_size == pytest.approx(0.65)
    first = tmp_path / "exp_MMStack_B2-Site_0.ome.tif"
    assert f.sources["brightfield"] == f"{first}[r=2,t=1,c=1]"
    # the files a position's planes lie in, for a resumed run to compare
    assert p.sources(("C3", 1, 0)) == [first, tmp_path / "exp_MMStack_C3-Site_1.ome.tif"]
    # one of its files given alone: all of its positions
    assert open_plate(tmp_path / "exp_MMStack_Pos2.ome.tif").keys() == p.keys()


def test_micro_manager_planes_are_read_where_the_index_map_puts_them(tmp_path):
    # Without the dataset reopened for each frame (every file's index map parsed each time: 12 ms
    # a frame at 48 files, 0.1 ms so); the pixels as tifffile reads them; a file cut short after
    # the plate was opened is a PlateError naming it.
    labels = [f"B{k + 2}-Site_0" for k in range(3)]
    summary = mm_summary(labels, 2)
    for pos, label in enumerate(labels):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 2, order=(1, 2, 0)), summary)
    p = open_plate(tmp_path)
    assert all(s.planes is not None for s in p.stacks.values())
    with tifffile.TiffFile(tmp_path / "exp_MMStack_Pos0.ome.tif") as tif:
        whole = tif.series[0].asarray()   # (R, T, C, Y, X) here
    assert tif.series[0].axes == "RTCYX"
    for pos in range(3):
        for t in range(2):
            f = p.read((f"B{pos + 2}", 0, t))
            # channels BF, DAPI, Cy5 hold planes 1, 2, 0 of `plane`
            assert [f.brightfield[0, 0], f.hoechst[0, 0], f.draq7[0, 0]] == [100 * pos + 10 * t + k for k in (1, 2, 0)]
            assert np.array_equal(f.stack(), whole[pos, t])
    last = tmp_path / "exp_MMStack_Pos2.ome.tif"
    last.write_bytes(last.read_bytes()[:500])
    with pytest.raises(PlateError, match=r"cannot read '.*exp_MMStack_Pos2.ome.tif': it ends inside the plane .* cut short"):
        p.read(("B4", 0, 1))


def test_a_micro_manager_file_of_several_positions(tmp_path):
    # all positions in one file, time points outermost (axes TRCYX)
    planes = [q for t in range(2) for pos in range(3) for q in mm_planes(pos, 2)[3 * t: 3 * t + 3]]
    # labels of the Create Grid dialog (TileCreator: PREFIX-PosCOL_ROW)
    labels = ["1-Pos000_000", "1-Pos001_000", "x"]
    summary = dict(mm_summary(labels, 2), TimeFirst=True)
    write_mmstack(tmp_path / "B2_MMStack_Default.ome.tif", planes, summary, names=labels)
    with tifffile.TiffFile(tmp_path / "B2_MMStack_Default.ome.tif") as tif:
        assert tif.series[0].axes == "TRCYX"
    p = open_plate(tmp_path)   # labels that name no well: the dataset's well, the position's index
    assert p.keys() == [FrameKey("B2", s, t) for s in range(3) for t in range(2)]
    for pos in range(3):
        for t in range(2):
            check_position(p, ("B2", pos, t), pos, t)
def test_stack_folders_skip_thumbnails_earlier_training_sets_and_read_site_names(tmp_path, plate):
    from livedead_gpu.export import export_plate

    root = write_stacks(tmp_path / "st", plate)
    tifffile.imwrite(root / "B2_thumb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    p = open_plate(root)
    assert [q.name for q in p.ignored] == ["B2_thumb.tif"] and not p.problems
    export_plate(root, root / "run1")
    # a second training set in the plate folder: the first one's TIFFs are no stacks
    assert open_plate(root, exclude=[root / "run2"]).keys() == p.keys()
    # Micro-Manager's HCS position names: one well, its sites
    mm = tmp_path / "mm"
    mm.mkdir()
    for site in (0, 1):
        (mm / f"exp_MMStack_B2-Site_{site}.ome.tif").write_bytes((root / "B2_s0.ome.tif").read_bytes())
        (mm / f"C3-Site_{site}.ome.tif").write_bytes((root / "C3_s0.ome.tif").read_bytes())
    assert {(k.well, k.site) for k in open_plate(mm).keys()} == {("B2", 0), ("B2", 1), ("C3", 0), ("C3", 1)}


def test_a_micro_manager_1_4_dataset_lists_its_positions_under_initial_position_list(tmp_path):
    # Micro-Manager 1.4: Summary InitialPositionList [{"Label", "GridRowIndex", ...}], PixelSize_um;
    # the HCS Site Generator's names (WELL-Site_N, sites from 0); a file per position, named after it
    labels = ["B2-Site_0", "B2-Site_1", "C3-Site_0"]
    summary = mm_summary(labels, 1, version="1.4")
    for pos, label in enumerate(labels):
        write_mmstack(tmp_path / f"exp_MMStack_{label}.ome.tif", mm_planes(pos, 1), summary, names=labels,
                      pixel_size=0.325)   # the planes' own pixel size: the Summary's wins in 1.4
    p = open_plate(tmp_path / "exp_MMStack_B2-Site_1.ome.tif")
    assert p.keys() == [FrameKey("B2", 0, 0), FrameKey("B2", 1, 0), FrameKey("C3", 0, 0)] and not p.problems
    for pos, key in enumerate(p.keys()):
        f = check_position(p, key, pos, 0)
    assert f.pixel_size == pytest.approx(0.65, rel=1e-9)


@pytest.mark.parametrize("version", ["1.4", "2.0"])
def test_micro_manager_positions_named_by_their_planes_alone(tmp_path, version):
    # No position list in the Summary (1.4: InitialPositionList null, 2.0: no StagePositions), as
    # where the acquisition kept none: each plane's metadata still names its position (PositionName)
    labels = ["B2-Site_0", "B2-Site_1", "D4-Site_2"]
    summary = mm_summary(labels, 2, version=version, listed=False)
    assert ("StagePositions" not in summary) if version == "2.0" else summary["InitialPositionList"] is None
    for pos in range(3):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 2), summary, names=labels)
    p = open_plate(tmp_path)
    assert p.keys() == [FrameKey(w, s, t) for w, s in [("B2", 0), ("B2", 1), ("D4", 2)] for t in (0, 1)]
    assert not p.problems
    check_position(p, ("D4", 2, 1), 2, 1)
    # a file of positions 1 and 2 alone (the others missing): their own names still
    part = tmp_path / "part"
    part.mkdir()
    write_mmstack(part / "exp_MMStack_1.ome.tif", mm_planes(1, 2) + mm_planes(2, 2), summary, names=labels)
    assert open_plate(part).keys() == [FrameKey(w, s, t) for w, s in [("B2", 1), ("D4", 2)] for t in (0, 1)]


def test_micro_manager_2_pixel_size_is_read_from_the_planes(tmp_path):
    # Micro-Manager 2.0 writes no pixel size in the Summary (PixelSizeUm is per-image metadata);
    # the resolution tags round it (pixels per cm, an integer): 1e4 / 30769 = 0.325003 µm
    labels = ["B2-Site_0", "B2-Site_1"]
    summary = mm_summary(labels, 1)
    assert "PixelSize_um" not in summary
    for pos, label in enumerate(labels):
        write_mmstack(tmp_path / f"exp_MMStack_{label}.ome.tif", mm_planes(pos, 1), summary, names=labels,
                      pixel_size=0.325)
    p = open_plate(tmp_path)
    assert p.read(("B2", 1, 0)).pixel_size == pytest.approx(0.325, rel=1e-9)


def test_a_micro_manager_dataset_missing_files(tmp_path):
    labels = ["B2-Site_0", "C3-Site_1", "D4-Site_2"]
    # a position's file missing: that position's problem
    for pos in (0, 2):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), mm_summary(labels, 1))
    p = open_plate(tmp_path)
    assert p.keys() == [FrameKey("B2", 0, 0), FrameKey("C3", 1, 0), FrameKey("D4", 2, 0)]
    assert "position 1 ('C3-Site_1'): it holds 0 of the 3 planes" in p.problems[FrameKey("C3", 1, 0)]
    check_position(p, ("D4", 2, 0), 2, 0)
    # a file of positions 1 and 2 alone: tifffile numbers them from 0, their labels stay theirs
    part = tmp_path / "part"
    part.mkdir()
    write_mmstack(part / "exp_MMStack_1.ome.tif", mm_planes(1, 1) + mm_planes(2, 1), mm_summary(labels, 1))
    p = open_plate(part)
    assert p.keys() == [FrameKey("C3", 1, 0), FrameKey("D4", 2, 0)] and not p.problems
    check_position(p, ("C3", 1, 0), 1, 0)
    assert p.read(("D4", 2, 0)).sources["hoechst"].endswith("exp_MMStack_1.ome.tif[r=1,t=0,c=1]")


def test_stack_patterns_and_channel_map_entries_that_match_nothing(tmp_path, plate):
    root = write_stacks(tmp_path / "st", plate)
    with pytest.raises(ValueError, match=r"pattern '\(\?P<wel>.*' needs a named group \(\?P<well>"):
        open_plate(root, pattern=r"(?P<wel>[A-H]\d)", layout="stack")   # had named wells after the files
    with pytest.raises(PlateError, match=r"pattern 'X\(\?P<well>.*' matched no file"):
        open_plate(root, pattern=r"X(?P<well>\w+)", layout="stack")
    p = open_plate(root, pattern=r"(?P<well>C\d)_s(?P<site>\d)", layout="stack")
    assert {k.well for k in p.keys()} == {"C3"} and len(p.ignored) == 1
    with pytest.warns(UserWarning, match=r"channel map: '5' name no channel of the stacks"):
        open_plate(root, channel_map=["5=draq7"])
    previews = tmp_path / "previews"
    previews.mkdir()
    tifffile.imwrite(previews / "B2_thumb.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(PlateError, match=r"no stack but previews .*'B2_thumb.tif'"):
        open_plate(previews, layout="stack")


def test_user_regex(tmp_path, plate):
    root = tmp_path / "custom"
    for (well, site, t), frame in plate.items():
        d = root / f"day{t}"
        d.mkdir(parents=True, exist_ok=True)
        for role, image in channels(frame).items():
            tifffile.imwrite(d / f"plate7-{well}-f{site}-{role.upper()}.tiff", image)
    pattern = r"day(?P<time>\d+)/plate7-(?P<well>[A-H]\d+)-f(?P<site>\d+)-(?P<channel>\w+)\.tiff$"
    p = open_plate(root, pattern=pattern)
    assert p.layout == "pattern" and not p.problems
    check_frames(p, plate, lambda k: FrameKey(*k))
    with pytest.raises(ValueError, match="named groups"):
        open_plate(root, layout="gen5", pattern=r"(?P<well>\w+)_(?P<chan>\w+)")
    with pytest.raises(PlateError, match=r"two stacks for well B2 site 0.*\(\?P<channel>"):   # no channel group = stacks
        open_plate(root, pattern=r"plate7-(?P<well>[A-H]\d+)-f(?P<site>\d+)-(?P<chan>\w+)")
    with pytest.raises(PlateError, match="single 2-D image.*channel"):
        open_plate(root / "day0" / "plate7-B2-f0-DRAQ7.tiff")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        open_plate(root, pattern=r"(?P<well>")


def test_channel_map_parsing():
    assert parse_channel_map(["Texas Red=draq7", "GFP = ignore"]) == {"Texas Red": "draq7", "GFP": "ignore"}
    with pytest.raises(ValueError, match="NAME=ROLE"):
        parse_channel_map(["draq7"])
    with pytest.raises(ValueError, match="role of 'X'"):
        parse_channel_map(["X=dead"])


def test_unmapped_channel_name_needs_a_map(tmp_path, plate):
    names = dict(GEN5_NAMES, draq7="Texas Red")
    root = write_gen5(tmp_path / "p", plate, names=names)
    p = open_plate(root)
    assert set(p.problems) == set(p.keys())
    msg = p.problems[p.keys()[0]]
    assert "no draq7 channel" in msg and "Texas Red" in msg and "Cy5" not in msg
    with pytest.raises(PlateError, match="Texas Red_001.tif"):
        p.read(p.keys()[0])
    p = open_plate(root, channel_map={"Texas Red": "draq7"})
    assert not p.problems
    with pytest.warns(UserWarning, match=r"'Texas Rd' matches no channel of .*Texas Red"):
        open_plate(root, channel_map={"Texas Rd": "draq7", "Texas Red": "draq7"})
    np.testing.assert_array_equal(p.read(("B2", 1, 2)).draq7, plate[("B2", 0, 1)].draq7)


def test_missing_channel_and_time_point_name_files(tmp_path, plate):
    root = write_gen5(tmp_path / "p", plate)
    (root / "C3_02_3_1_Cy5_002.tif").unlink()
    for f in root.glob("B2_*_002.tif"):
        f.unlink()
    p = open_plate(root)
    assert set(p.problems) == {FrameKey("C3", 1, 2), FrameKey("B2", 1, 2)}
    miss = p.problems[FrameKey("C3", 1, 2)]
    assert "no draq7 channel" in miss and "C3_02_1_1_Bright Field_002.tif" in miss
    assert "no files for this time point" in p.problems[FrameKey("B2", 1, 2)]
    p.read(("B2", 1, 1))   # the complete frames still read


def test_corrupt_and_unequal_files_name_the_file(tmp_path, plate):
    root = write_gen5(tmp_path / "p", plate)
    bad = root / "B2_02_2_1_DAPI_001.tif"
    bad.write_bytes(b"II*\x00garbage" * 3)
    p = open_plate(root)
    with pytest.raises(PlateError, match="cannot read .*B2_02_2_1_DAPI_001.tif"):
        p.read(("B2", 1, 1))
    tifffile.imwrite(root / "C3_02_3_1_Cy5_001.tif", np.zeros((32, 64), np.uint16))
    with pytest.raises(PlateError, match=r"differ in shape.*C3_02_3_1_Cy5_001.tif \(32, 64\)"):
        p.read(("C3", 1, 1))


def test_duplicate_files_for_one_channel(tmp_path, plate):
    root = write_gen5(tmp_path / "p", plate)
    (root / "sub").mkdir()
    tifffile.imwrite(root / "sub" / "B2_02_1_1_Bright Field_001.tif", plate[("B2", 0, 0)].brightfield)
    p = open_plate(root)
    assert "2 files for channel 'Bright Field'" in p.problems[FrameKey("B2", 1, 1)]


def test_stack_problems(tmp_path, plate):
    root = tmp_path / "st"
    root.mkdir()
    tifffile.imwrite(root / "A1.tif", np.zeros((2, 2, 16, 16), np.uint16), imagej=True,
                     metadata={"axes": "TCYX"})
    with pytest.raises(PlateError, match=r"A1.tif.*no brightfield/hoechst/draq7 channel among \['0', '1'\]"):
        open_plate(root)
    with pytest.raises(PlateError, match=r"A1.tif.*no draq7 channel"):
        open_plate(root, channel_map=["0=brightfield", "1=hoechst"])
    (root / "A1.tif").write_bytes(b"not a tiff")
    with pytest.raises(PlateError, match="cannot read .*A1.tif"):
        open_plate(root, layout="stack")
    # next to readable stacks, a bad one is that position's listed problem
    write_stacks(root, plate)
    p = open_plate(root)
    assert set(p.problems) == {FrameKey("A1", 0, 0)}
    assert "cannot read" in p.problems[FrameKey("A1", 0, 0)] and "A1.tif" in p.problems[FrameKey("A1", 0, 0)]
    assert [q.name for q in p.sources(("A1", 0, 0))] == ["A1.tif"]
    with pytest.raises(PlateError, match="A1.tif"):
        p.read(("A1", 0, 0))
    p.read(("B2", 0, 1))


@pytest.mark.parametrize("kind", ["ome", "imagej", "plain"])
def test_a_stack_cut_short_is_damaged(tmp_path, plate, kind):
    # An interrupted copy: tifffile only logs the cut and shows the pages before it (and the
    # OME-XML naming the channels may be gone), so frames vanished and channels were swapped.
    root = write_stacks(tmp_path / "st", plate, kind=kind, names=("Cy5", "DAPI", "Bright Field"))
    path = sorted(root.glob("*.tif"))[0]
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(PlateError, match=f"cannot read .*{path.name}.*damaged or truncated"):
        open_plate(path)
    p = open_plate(root)  # beside intact stacks: that position's listed problem
    assert any("damaged or truncated" in msg for msg in p.problems.values())


def test_stack_with_fewer_time_points(tmp_path, plate):
    root = write_stacks(tmp_path / "st", plate)
    f = plate[("C3", 0, 0)]
    tifffile.imwrite(root / "C3_s0.ome.tif", np.stack([f.brightfield, f.hoechst, f.draq7])[None], ome=True,
                     metadata={"axes": "TCYX", "Channel": {"Name": ["BF", "DAPI", "Cy5"]}})
    p = open_plate(root)
    assert set(p.problems) == {FrameKey("C3", 0, 1)}
    assert "holds 1 time point(s), other stacks 2" in p.problems[FrameKey("C3", 0, 1)]


def test_gen5_focal_planes_are_chosen_with_z(tmp_path, plate):
    # A Z series names each plane (SP1Z1, SP1Z2, ...): one frame a channel per plane
    one = {k: f for k, f in plate.items() if k[0] == "B2"}
    root = write_gen5(tmp_path / "p", one, "new")
    for path in sorted(root.glob("*Z1_*.tif")):   # plane 2: the same files, the images inverted
        tifffile.imwrite(path.with_name(path.name.replace("Z1_", "Z2_")), 65535 - tifffile.imread(path))
    p = open_plate(root)
    assert set(p.problems) == set(p.keys()) and len(p.keys()) == len(one)
    assert "channel 'Bright Field': 2 focal planes (z = 1, 2); choose one with z=" in p.problems[FrameKey("B2", 1, 1)]
    for z, want in ((1, lambda a: a), (2, lambda a: 65535 - a)):
        p = open_plate(root, z=z)
        assert not p.problems
        check_frames(p, {k: dataclasses.replace(f, **{r: want(getattr(f, r)) for r in ROLES}) for k, f in one.items()},
                     lambda k: FrameKey(k[0], k[1] + 1, k[2] + 1))
        assert f"Z{z}_C1" in p.read(("B2", 1, 1)).sources["brightfield"]
    p = open_plate(root, z=3)
    assert "no file of focal plane z=3 (its planes: z = 1, 2)" in p.problems[FrameKey("B2", 1, 1)]
    with pytest.raises(ValueError, match="z must be a focal plane number >= 0 or None, got -1"):
        open_plate(root, z=-1)
    with pytest.raises(ValueError, match="z must be a focal plane number >= 0 or None, got True"):
        open_plate(root, z=True)


def test_info_says_what_segment_would_read(tmp_path, plate, capsys):
    from livedead_gpu.cli import main

    one = {k: f for k, f in plate.items() if k[0] == "B2"}
    root = write_gen5(tmp_path / "p", one, "new", pixel_size=0.65)
    for path in sorted(root.glob("*Z1_*.tif")):
        path.with_name(path.name.replace("Z1_", "Z2_")).write_bytes(path.read_bytes())
    assert main(["info", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"({'gen5'}): {len(one)} frames = 1 positions in 1 wells (B2) x 2 time points (1..2)" in out
    assert f"{len(one)} frame(s) cannot be read as found" in out and "2 focal planes (z = 1, 2)" in out
    assert main(["info", str(root), "--z", "2", "--channel-map", "Cy5=draq7"]) == 0
    out = capsys.readouterr().out
    assert "first frame B2 site 1 time 1: 64 x 64 px, uint16, 0.65 µm/px" in out and "every frame can be read" in out
    assert "hoechst     'DAPI'" in out and "Z2_C2_DAPI_T001.tif" in out
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["info"]) == 0 and "backends: cpu" in capsys.readouterr().out


def test_imagexpress_z_steps_and_their_projection(tmp_path, plate):
    # MetaXpress: ZStep_N/ folders, the projection (when saved) where a single plane goes
    one = {k: f for k, f in plate.items() if k[0] == "B2"}
    root = write_imagexpress(tmp_path / "ix", one)
    for step in (1, 2):
        for path in sorted(root.glob("TimePoint_*/*.tif")):
            (path.parent / f"ZStep_{step}").mkdir(exist_ok=True)
            tifffile.imwrite(path.parent / f"ZStep_{step}" / path.name, tifffile.imread(path) // (step + 1))
    key_of = lambda k: FrameKey(f"{k[0][0]}0{k[0][1]}", k[1] + 1, k[2] + 1)   # noqa: E731
    p = open_plate(root)   # the projection
    assert not p.problems and len(p.keys()) == len(one)
    check_frames(p, one, key_of)
    p = open_plate(root, z=2)
    check_frames(p, {k: dataclasses.replace(f, **{r: getattr(f, r) // 3 for r in ROLES}) for k, f in one.items()},
                 key_of)
    assert "ZStep_2" in p.read(("B02", 1, 1)).sources["hoechst"]
    for path in sorted(root.glob("TimePoint_*/*.tif")):   # no projection saved: a plane must be chosen
        path.unlink()
    assert "2 focal planes (z = 1, 2)" in open_plate(root).problems[FrameKey("B02", 1, 1)]


def test_a_stack_of_focal_planes_is_read_at_z(tmp_path, plate):
    one = {k: f for k, f in plate.items() if k[:2] == ("B2", 0)}
    tczyx = np.stack([np.stack([np.stack([getattr(f, r) // (z + 1) for z in range(3)]) for r in ROLES])
                      for _, f in sorted(one.items())])
    root = tmp_path / "st"
    root.mkdir()
    tifffile.imwrite(root / "B2_s0.ome.tif", tczyx, ome=True,
                     metadata={"axes": "TCZYX", "Channel": {"Name": ["Bright Field", "DAPI", "Cy5"]}})
    with pytest.raises(PlateError, match=r"B2_s0.ome.tif.* may exceed 1 \(got Z=3\) \(Z: choose the focal plane, "
                                         r"z= or --z, numbered from 0\)"):
        open_plate(root)
    for z in (0, 2):
        p = open_plate(root, z=z)
        check_frames(p, {k: dataclasses.replace(f, **{r: getattr(f, r) // (z + 1) for r in ROLES})
                         for k, f in one.items()}, lambda k: FrameKey(*k))
        assert p.read(("B2", 0, 1)).sources["draq7"].endswith(f"[t=1,z={z},c=2]")
        assert p.roles(("B2", 0, 0))["z"] == z   # part of a resumed export's comparison
    with pytest.raises(PlateError, match=r"B2_s0.ome.tif.* has 3 focal planes .*numbered from 0; z=3 is not among"):
        open_plate(root, z=3)
    # two positions in one uncompressed OME file: their planes read where the file puts them
    with tifffile.TiffWriter(tmp_path / "two.ome.tif", ome=True) as tif:
        for name, scale in (("B2", 1), ("C3", 2)):
            tif.write(tczyx // scale, metadata={"axes": "TCZYX", "Name": name,
                                                "Channel": {"Name": ["Bright Field", "DAPI", "Cy5"]}})
    p = open_plate(tmp_path / "two.ome.tif", z=1)
    assert p.stacks[("C3", 0)].planes is not None
    for well, scale in (("B2", 1), ("C3", 2)):
        np.testing.assert_array_equal(p.read((well, 0, 1)).hoechst, tczyx[1, 1, 1] // scale)
    write_stacks(tmp_path / "flat", one)   # a stack of one plane is read whatever z
    p = open_plate(tmp_path / "flat", z=4)
    check_frames(p, one, lambda k: FrameKey(*k))
    assert "z" not in p.roles(("B2", 0, 0))


def test_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_plate(tmp_path / "nope")
    with pytest.raises(ValueError, match="layout must be one of"):
        open_plate(tmp_path, layout="cellomics")
    with pytest.raises(PlateError, match="no TIFF files"):
        open_plate(tmp_path)
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(PlateError, match=r"no file .* matches the gen5 pattern \(1 TIFF file\(s\) found; e.g. 'x.tif'\)"):
        open_plate(tmp_path, layout="gen5")


def test_upper_case_tif_extension(tmp_path, plate):
    # MetaXpress and Windows tools write A01_s1_w1.TIF; the folder layouts must still see them
    for root in (write_imagexpress(tmp_path / "ix", plate), write_gen5(tmp_path / "g5", plate)):
        for f in list(root.rglob("*.tif")):
            f.rename(f.with_suffix(".TIF"))
        p = open_plate(root)
        assert p.layout in ("imagexpress", "gen5") and not p.problems and not p.ignored
        assert len(p) == len(plate)


def test_pattern_group_that_matched_nothing(tmp_path, plate):
    root = write_gen5(tmp_path / "g5", plate)
    # an optional channel group that takes no part in the match, an empty well
    with pytest.raises(ValueError, match=r"matched 'B2_02_1_1_Bright Field_001.tif' but its channel group is empty"):
        open_plate(root, pattern=r"(?P<well>[A-Z]\d)_\d+_\d_(?P<site>\d)_(?:(?P<channel>DAPI)|[^_]+)_(?P<time>\d+)")
    with pytest.raises(ValueError, match=r"matched '.*' but its well group is empty"):
        open_plate(root, pattern=r"(?P<well>[a-z]*)_\d+_\d_(?P<site>\d)_(?P<channel>[^_]+)_(?P<time>\d+)")


def test_a_folder_of_two_layouts_says_which_it_reads(tmp_path):
    write_imagexpress(tmp_path, small_plate(wells=("B2",), n_times=1))
    write_gen5(tmp_path, small_plate(wells=("C3",), n_times=1))
    with pytest.warns(UserWarning, match=r"3 ImageXpress and 3 Gen5 file name\(s\); reading it as ImageXpress"):
        plate = open_plate(tmp_path)
    assert plate.layout == "imagexpress" and {k.well for k in plate.keys()} == {"B02"}
    assert open_plate(tmp_path, layout="gen5").keys()[0].well == "C3"


def test_a_renamed_micro_manager_dataset_is_named_as_such(tmp_path):
    # tifffile logs "MMStack file name is invalid" for files not named PREFIX_MMStack*: it had been
    # called "a damaged or truncated TIFF"
    labels = ["B2-Site_0", "B2-Site_1"]
    summary = mm_summary(labels, 1)
    for pos in range(2):
        write_mmstack(tmp_path / f"renamed_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), summary)
    with pytest.raises(PlateError, match=r"renamed_MMStack_Pos0.ome.tif': a file of a Micro-Manager dataset renamed"
                                         r".*'Prefix'"):
        open_plate(tmp_path)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_an_ome_file_of_several_positions_reads_its_planes_where_they_lie(tmp_path, compression):
    # One of several positions is read at its planes' offsets (reopening the file parsed the OME-XML
    # of every position each time: 174 ms a frame at 96 positions, 0.2 ms so); compressed planes
    # through tifffile, as before
    path = tmp_path / "B2.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for i in range(3):
            data = np.stack([np.stack([plane(i, t, k) for k in (2, 0, 1)]) for t in range(2)])[:, None]
            tw.write(data, compression=compression, metadata={"axes": "TZCYX", "Name": f"B2-Site_{i}",
                                                              "Channel": {"Name": ["Cy5", "BF", "DAPI"]}})
    p = open_plate(path)
    assert all((s.planes is None) == (compression is not None) for s in p.stacks.values())
    for i in range(3):
        for t in range(2):
            check_position(p, ("B2", i, t), i, t)


def test_a_damaged_file_of_a_micro_manager_dataset_is_named_from_its_siblings(tmp_path):
    # tifffile reads every file of the dataset whichever is opened, and fails on the damaged one:
    # the intact files' error had been "not a readable TIFF (KeyError: 'IndexMap')" alone
    labels = ["B2-Site_0", "C3-Site_1", "D4-Site_2"]
    for pos in range(3):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), mm_summary(labels, 1))
    cut = tmp_path / "exp_MMStack_Pos1.ome.tif"
    cut.write_bytes(cut.read_bytes()[:700])
    with pytest.raises(PlateError, match=r"exp_MMStack_Pos0.ome.tif': .*its Micro-Manager dataset's file "
                                         r"'exp_MMStack_Pos1.ome.tif'.* is damaged .*move it aside"):
        open_plate(tmp_path / "exp_MMStack_Pos0.ome.tif")


def test_a_series_of_another_plane_size_is_left_out_with_a_warning(tmp_path):
    # a full-resolution series of another size is no preview (is_reduced): it had vanished unsaid
    path = tmp_path / "B2.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        for i, size in enumerate((16, 16, 20)):
            tw.write(np.zeros((3, size, size), np.uint16), metadata={"axes": "CYX", "Name": f"B2-Site_{i}"})
    with pytest.warns(UserWarning, match=r"B2.ome.tif': image series 2 left out: their planes \(\(20, 20\)\) "
                                         r"are not of series 0's size \(16, 16\)"):
        p = open_plate(path)
    assert p.keys() == [FrameKey("B2", 0, 0), FrameKey("B2", 1, 0)]


def test_a_micro_manager_position_missing_planes_names_the_file_they_lie_in(tmp_path):
    # the opened file had been named alone, though the short planes are another file's
    labels = ["B2-Site_0", "C3-Site_1"]
    summary = mm_summary(labels, 3)
    write_mmstack(tmp_path / "exp_MMStack_Pos0.ome.tif", mm_planes(0, 3), summary)
    write_mmstack(tmp_path / "exp_MMStack_Pos1.ome.tif", mm_planes(1, 3)[:-2], summary)
    p = open_plate(tmp_path)
    (problem,) = p.problems.values()
    assert "exp_MMStack_Pos0.ome.tif' position 1 ('C3-Site_1'): it holds 7 of the 9 planes" in problem
    assert "(its planes found in 'exp_MMStack_Pos1.ome.tif')" in problem


def test_big_endian_micro_manager_planes_come_back_in_native_byte_order(tmp_path):
    labels = ["B2-Site_0", "B2-Site_1"]
    for pos in range(2):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), mm_summary(labels, 1))
    p = open_plate(tmp_path)
    stack = p.stacks[("B2", 1)]
    p.stacks[("B2", 1)] = dataclasses.replace(stack, plane=(np.dtype(">u2"), stack.plane[1]))
    for path in {f for f, _ in stack.planes.values()}:   # the planes' bytes swapped in place
        data = bytearray(Path(path).read_bytes())
        for (f, offset) in stack.planes.values():
            if f == path:
                n = 2 * int(np.prod(stack.plane[1]))
                data[offset:offset + n] = np.frombuffer(data[offset:offset + n], "<u2").astype(">u2").tobytes()
        Path(path).write_bytes(bytes(data))
    f = p.read(("B2", 1, 0))
    assert f.brightfield.dtype == np.dtype("=u2") and f.brightfield.dtype.isnative
    np.testing.assert_array_equal(f.brightfield, plane(1, 0, 0))


def test_a_lone_micro_manager_file_takes_its_channel_names_from_the_summary(tmp_path):
    # without the dataset's OME-XML its channels had been "0", "1", "2" in the default order
    path = tmp_path / "B2_MMStack_Pos0.ome.tif"
    write_mmstack(path, mm_planes(0, 2, order=(2, 0, 1)), mm_summary(["Default"], 2, chans=("Cy5", "BF", "DAPI")))
    p = open_plate(path)
    f = check_position(p, p.keys()[1], 0, 1)
    assert f.channel_names == {"brightfield": "BF", "hoechst": "DAPI", "draq7": "Cy5"}


def test_a_file_named_into_a_micro_manager_dataset_but_none_of_it_is_named(tmp_path):
    # tifffile gathers every PREFIX_MMStack*.tif of the Summary's prefix: a Fiji export beside the
    # dataset made every one of its files unreadable ("KeyError: 'IndexMap'" and nothing more)
    labels = ["B2-Site_0", "C3-Site_1"]
    for pos in range(2):
        write_mmstack(tmp_path / f"exp_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), mm_summary(labels, 1))
    tifffile.imwrite(tmp_path / "exp_MMStack_Pos0_MAX.tif", np.zeros((3, 16, 16), np.uint16), imagej=True)
    with pytest.raises(PlateError, match=r"Pos0.ome.tif': .*'exp_MMStack_Pos0_MAX.tif', named as a file of its "
                                         r"Micro-Manager dataset .* is no Micro-Manager file: move it aside"):
        open_plate(tmp_path / "exp_MMStack_Pos0.ome.tif")


def test_a_micro_manager_prefix_with_a_glob_character_is_refused_clearly(tmp_path):
    # tifffile's unescaped glob finds none of plate[1]'s other files: two positions 0 had clashed
    labels = ["B2-Site_0", "C3-Site_1"]
    summary = {**mm_summary(labels, 1), "Prefix": "plate[1]"}
    for pos in range(2):
        write_mmstack(tmp_path / f"plate[1]_MMStack_Pos{pos}.ome.tif", mm_planes(pos, 1), summary)
    with pytest.raises(PlateError, match=r"prefix 'plate\[1\]' holds a glob character"):
        open_plate(tmp_path)


def test_previews_before_or_after_the_positions_are_left_out_unsaid(tmp_path):
    # an unflagged 4x4 preview had been warned of as a position; one saved first had been taken for
    # the stack ("a single 2-D image")
    for first in (False, True):
        path = tmp_path / f"B{2 + first}.ome.tif"
        with tifffile.TiffWriter(path, ome=True) as tw:
            if first:
                tw.write(np.zeros((4, 4), np.uint16), subfiletype=1)
            for i in range(2):
                tw.write(np.full((3, 16, 16), i, np.uint16), metadata={"axes": "CYX", "Name": f"B{2 + first}-Site_{i}"})
            tw.write(np.zeros((4, 4), np.uint16))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            p = open_plate(path)
        assert p.keys() == [FrameKey(f"B{2 + first}", i, 0) for i in range(2)]
        assert p.read((f"B{2 + first}", 1, 0)).hoechst[0, 0] == 1


@pytest.mark.parametrize("listed", [True, False])
def test_a_lone_micro_manager_file_of_one_position_is_named_by_its_label(tmp_path, listed):
    # tifffile drops the axis R of a file holding one position read alone: its label (the
    # Summary's, or its planes' PositionName) had been lost, the file's stem its well
    labels = ["B2-Site_0", "C3-Site_4"]
    path = tmp_path / "exp_MMStack_Pos1.ome.tif"
    write_mmstack(path, mm_planes(1, 2), mm_summary(labels, 2, listed=listed), names=labels)
    p = open_plate(path)
    assert p.keys() == [FrameKey("C3", 4, t) for t in range(2)]
    check_position(p, ("C3", 4, 1), 1, 1)
    # a well in the file's name still wins, as for any stack
    named = tmp_path / "named"
    named.mkdir()
    write_mmstack(named / "D5_MMStack_Pos1.ome.tif", mm_planes(1, 1),
                  {**mm_summary(labels, 1, listed=listed), "Prefix": "D5"}, names=labels)
    assert open_plate(named / "D5_MMStack_Pos1.ome.tif").keys() == [FrameKey("D5", 0, 0)]
