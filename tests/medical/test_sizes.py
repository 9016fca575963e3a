"""Nodule sizes: the LIDC read format (a small file written here), the sizes an outline
implies, the segmentation-based size of detected nodules against phantom nodules of known
size, and the shared real slab's reads where they are present."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from deepseek.medical.lidc import (
    LidcFileError,
    fill_outline,
    outline_measures,
    read_lidc_xml,
)
from deepseek.medical.nodule_size import measure_candidate
from deepseek.medical.volume import Volume

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct"

SQUARE = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>"
                 for x, y in [(10, 10), (19, 10), (19, 19), (10, 19)])
HOLE = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>"
               for x, y in [(14, 14), (15, 14), (15, 15), (14, 15)])
XML = f"""<?xml version="1.0" encoding="UTF-8"?>
<LidcReadMessage xmlns="http://www.nih.gov">
<readingSession><servicingRadiologistID>r-one</servicingRadiologistID>
 <unblindedReadNodule><noduleID>N1</noduleID>
  <characteristics><subtlety>4</subtlety><malignancy>3</malignancy></characteristics>
  <roi><imageZposition>-10.0</imageZposition><imageSOP_UID>1.2.3</imageSOP_UID>
   <inclusion>TRUE</inclusion>{SQUARE}</roi>
  <roi><imageZposition>-12.5</imageZposition><imageSOP_UID>1.2.4</imageSOP_UID>
   <inclusion>TRUE</inclusion>{SQUARE}</roi>
  <roi><imageZposition>-12.5</imageZposition><imageSOP_UID>1.2.4</imageSOP_UID>
   <inclusion>FALSE</inclusion>{HOLE}</roi>
 </unblindedReadNodule>
 <unblindedReadNodule><noduleID>small</noduleID>
  <roi><imageZposition>-20</imageZposition><imageSOP_UID>1.2.5</imageSOP_UID>
   <inclusion>TRUE</inclusion><edgeMap><xCoord>40</xCoord><yCoord>41</yCoord></edgeMap></roi>
 </unblindedReadNodule>
 <nonNodule><nonNoduleID>nn1</nonNoduleID><imageZposition>-30</imageZposition>
  <imageSOP_UID>1.2.6</imageSOP_UID><locus><xCoord>5</xCoord><yCoord>6</yCoord></locus>
 </nonNodule>
</readingSession>
<readingSession><servicingRadiologistID>r-two</servicingRadiologistID></readingSession>
</LidcReadMessage>
"""


def _grid(spacing=(0.5, 0.5, 2.5)) -> Volume:
    return Volume(np.zeros((4, 64, 64), np.int16), spacing, (-100.0, -50.0, -17.5))


def test_lidc_reader_and_outline_sizes(tmp_path):
    p = tmp_path / "reads.xml"
    p.write_text(XML)
    reads = read_lidc_xml(p)
    assert [r.reader_id for r in reads] == ["r-one", "r-two"]
    one = reads[0]
    n1, small = one.nodules
    assert n1.nodule_id == "N1" and n1.characteristics == {"subtlety": 4, "malignancy": 3}
    assert [r.inclusion for r in n1.rois] == [True, True, False] and not n1.is_small
    assert small.is_small and one.non_nodules[0].point == (5.0, 6.0)
    assert one.non_nodules[0].z == -30.0
    vol = _grid()
    m = outline_measures(n1, vol)
    # a 10 x 10 pixel square (outline included) on two slices, a 2 x 2 hole cut in one
    assert m["slices"] == 2
    assert m["volume_ml"] == pytest.approx((100 + 96) * 0.25 * 2.5 / 1000)
    assert m["long_axis_mm"] == pytest.approx(math.hypot(4.5, 4.5), abs=0.01)
    assert m["volume_equivalent_mm"] == pytest.approx(
        (6 * m["volume_ml"] * 1000 / math.pi) ** (1 / 3), abs=0.01)
    lo, hi = m["extent_mm"]
    assert lo == pytest.approx([-100 + 9.5 * 0.5, -50 + 9.5 * 0.5, -12.5 - 1.25])
    assert hi == pytest.approx([-100 + 19.5 * 0.5, -50 + 19.5 * 0.5, -10 + 1.25])
    # only the part within a z range; none left outside the outline's slices
    part = outline_measures(n1, vol, z_range=(-11.0, -9.0))
    assert part["slices"] == 1 and part["volume_ml"] == pytest.approx(100 * 0.25 * 2.5 / 1000)
    assert outline_measures(n1, vol, z_range=(0.0, 5.0)) is None
    s = outline_measures(small, vol)
    assert s["small"] and s["long_axis_mm"] is None


def test_fill_outline_of_a_concave_shape():
    # an L of pixel outline points: 3 wide, 5 tall, with a 2 x 2 notch
    pts = [(0, 0), (2, 0), (2, 2), (4, 2), (4, 4), (0, 4)]
    cells = {tuple(c) for c in fill_outline(np.array(pts, float))}
    assert (1, 1) in cells and (3, 3) in cells and (3, 1) not in cells
    assert set(map(tuple, pts)) <= cells


@pytest.mark.parametrize("text,match", [
    ("not xml", "not well-formed"),
    ("<Other/>", "not 'LidcReadMessage'"),
    ("<LidcReadMessage/>", "no readingSession"),
    ("<LidcReadMessage><readingSession><unblindedReadNodule><noduleID>A</noduleID><roi>"
     "<inclusion>TRUE</inclusion><edgeMap><xCoord>1</xCoord><yCoord>1</yCoord></edgeMap>"
     "</roi></unblindedReadNodule></readingSession></LidcReadMessage>",
     "nodule 'A', roi 0 has no imageZposition"),
    ("<LidcReadMessage><readingSession><unblindedReadNodule><noduleID>B</noduleID><roi>"
     "<imageZposition>x</imageZposition></roi></unblindedReadNodule></readingSession>"
     "</LidcReadMessage>", "imageZposition 'x' is not a number"),
])
def test_bad_lidc_files_are_named(tmp_path, text, match):
    p = tmp_path / "bad.xml"
    p.write_text(text)
    with pytest.raises(LidcFileError, match=match):
        read_lidc_xml(p)
    with pytest.raises(LidcFileError, match="no such file"):
        read_lidc_xml(tmp_path / "missing.xml")


@pytest.mark.slow
def test_segmented_sizes_of_phantom_nodules():
    """Solid phantom nodules of known diameter, free, on a vessel or on the pleura: the
    volume-equivalent diameter within 10 %, the long axis within 12 % (a sphere's long axis
    is its diameter); a nodule the segmentation cannot separate keeps the detector's size
    and says why."""
    from deepseek.medical.synthetic import ChestPhantom, render_volume

    ph = ChestPhantom(seed=700_003, n_nodules=8, diameters=(5.0, 24.0), z_range=(-25, 25),
                      realistic=True)
    iso = render_volume(ph, (1.6, 1.6, 1.6), (32, 220, 220), seed=1).resample([1, 1, 1])
    measured = 0
    for n in ph.nodules:
        m = measure_candidate(iso, n.center, n.diameter_mm)
        if m["size_source"] != "segmentation":
            assert "reaches" in m["size_note"]
            continue
        if n.kind != "solid":
            continue
        measured += 1
        assert m["volume_equivalent_mm"] == pytest.approx(n.diameter_mm, rel=0.10), n
        assert m["long_axis_mm"] == pytest.approx(n.diameter_mm, rel=0.12), n
        lo, hi = np.asarray(m["extent_mm"])
        assert np.all(lo <= np.asarray(n.center)) and np.all(hi >= np.asarray(n.center))
    assert measured >= 3
    far = measure_candidate(iso, (0.0, 0.0, 500.0), 10.0)
    assert far["size_source"] == "detector" and "outside" in far["size_note"]


@pytest.mark.slow
def test_a_vessel_running_out_of_a_nodule_does_not_lengthen_it():
    """A solid nodule on a vessel whose region stays inside the cube with a vessel stub on
    it (seed 700021: 16.9 mm, long axis 31.8 mm before the compactness rule): the opening
    goes on until the region is compact, and the long axis is the nodule's again."""
    from deepseek.medical.nodule_size import MAX_ELONGATION
    from deepseek.medical.synthetic import ChestPhantom, render_volume

    ph = ChestPhantom(seed=700_021, n_nodules=10, diameters=(5.0, 24.0), z_range=(-25, 25),
                      realistic=True)
    iso = render_volume(ph, (1.6, 1.6, 1.6), (32, 220, 220), seed=1).resample([1, 1, 1])
    on_vessel = [n for n in ph.nodules if n.kind == "solid" and n.attached == "vessel"
                 and n.diameter_mm > 15]
    assert len(on_vessel) == 1
    m = measure_candidate(iso, on_vessel[0].center, on_vessel[0].diameter_mm)
    assert m["size_source"] == "segmentation" and m.get("opening_mm", 0) >= 1
    assert m["long_axis_mm"] == pytest.approx(on_vessel[0].diameter_mm, rel=0.12)
    for n in ph.nodules:   # every segmented region is compact, or the first one inside
        m = measure_candidate(iso, n.center, n.diameter_mm)
        if m["size_source"] == "segmentation" and n.kind == "solid":
            assert m["long_axis_mm"] <= MAX_ELONGATION * m["volume_equivalent_mm"] + 1e-9, n


@pytest.mark.skipif(not (SHARED / "LIDC-IDRI-0002-reads.xml").is_file(),
                    reason="the shared LIDC reads are not here")
def test_shared_reads_outline_the_large_lesion():
    """Two of the four readers outlined the large lesion of the shared slab's patient: its
    long axis over the whole scan is 29-33 mm, and 21-24 mm over the slab's slices."""
    from deepseek.medical.dicom import DICOMReader

    reads = read_lidc_xml(SHARED / "LIDC-IDRI-0002-reads.xml")
    assert len(reads) == 4
    vol = DICOMReader(SHARED / "LIDC-IDRI-0002", progress=False).load()
    z = (vol.origin[2], vol.origin[2] + (vol.shape[0] - 1) * vol.spacing[2])
    outlined = [n for r in reads for n in r.nodules if not n.is_small]
    assert len(outlined) == 2
    for n in outlined:
        whole, slab = outline_measures(n, vol), outline_measures(n, vol, z_range=z)
        assert 29 <= whole["long_axis_mm"] <= 33 and 21 <= slab["long_axis_mm"] <= 24
