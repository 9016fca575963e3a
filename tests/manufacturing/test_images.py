"""Part images decode to the same pixels with Pillow (the edge form, no OpenCV) as with
OpenCV, format by format and on the shared real crack photos; the gray conversion equals
OpenCV's arithmetic; what needs OpenCV says which install brings it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepseek.manufacturing import images
from deepseek.manufacturing.errors import FrameError, ManufacturingError
from deepseek.manufacturing.images import bgr_to_gray, imread, read_gray, to_gray

cv2 = pytest.importorskip("cv2")

SHARED_CRACKS = Path(__file__).resolve().parents[3] / "shared" / "data" / "crack"


def _photo(h: int = 37, w: int = 53, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with a dark line (JPEG-like content, not noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([120 + 60 * np.sin(xx / 7 + k) * np.cos(yy / 5) for k in range(3)], -1)
    base += rng.normal(0, 6, base.shape)
    base[h // 2, :] -= 80
    return np.clip(base, 0, 255).astype(np.uint8)


def _write_cases(d: Path) -> list[Path]:
    rgb = _photo()
    gray = rgb[..., 1]
    paths = []

    def save(name: str, img: Image.Image, **kw) -> None:
        img.save(d / name, **kw)
        paths.append(d / name)

    save("gray.png", Image.fromarray(gray))
    save("rgb.png", Image.fromarray(rgb))
    save("rgba.png", Image.fromarray(np.dstack([rgb, gray[..., None]])))
    save("la.png", Image.fromarray(np.dstack([gray, 255 - gray]), "LA"))
    save("palette.png", Image.fromarray(rgb).quantize(16))
    save("bilevel.png", Image.fromarray(gray > 128))
    save("gray16.png", Image.fromarray(gray.astype(np.uint16) * 257 + 3))
    save("rgb.jpg", Image.fromarray(rgb), quality=90)
    save("rgb420.jpg", Image.fromarray(rgb), quality=75, subsampling=2)
    save("gray.jpg", Image.fromarray(gray), quality=85)
    save("rgb.bmp", Image.fromarray(rgb))
    save("gray.tif", Image.fromarray(gray))
    save("gray16.tif", Image.fromarray(gray.astype(np.uint16) * 200))
    save("rgb.tif", Image.fromarray(rgb))
    save("rgb.ppm", Image.fromarray(rgb))
    save("gray.pgm", Image.fromarray(gray))
    save("gray16.pgm", Image.fromarray(gray.astype(np.uint16) * 257 + 3))  # Pillow: mode I
    save("rgb.webp", Image.fromarray(rgb), lossless=True)
    save("gray.jp2", Image.fromarray(gray))
    save("rgb.jp2", Image.fromarray(rgb))
    return paths


def test_pillow_decodes_as_opencv_does(tmp_path):
    for p in _write_cases(tmp_path):
        want = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        got = imread(p, decoder="pillow")
        assert got.dtype == want.dtype and got.shape == want.shape, p.name
        assert np.array_equal(got, want), p.name
        assert np.array_equal(read_gray(p, decoder="pillow"), read_gray(p, decoder="opencv"))


@pytest.mark.skipif(not SHARED_CRACKS.is_dir(), reason="the shared crack photos are not here")
def test_pillow_decodes_the_real_crack_photos_as_opencv_does():
    files = sorted(SHARED_CRACKS.rglob("*.jpg"))[::40]
    assert files
    for p in files:
        assert np.array_equal(imread(p, decoder="pillow"), cv2.imread(str(p),
                                                                       cv2.IMREAD_UNCHANGED)), p


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("code,ch", [(cv2.COLOR_BGR2GRAY, 3), (cv2.COLOR_BGRA2GRAY, 4)])
def test_gray_conversion_equals_opencv(dtype, code, ch, monkeypatch):
    top = np.iinfo(dtype).max + 1
    img = np.random.default_rng(ch).integers(0, top, (64, 80, ch)).astype(dtype)
    assert np.array_equal(bgr_to_gray(img), cv2.cvtColor(img, code))
    # to_gray takes OpenCV's conversion when it is installed, numpy's on the edge form: the
    # same pixels either way
    with monkeypatch.context() as m:  # with OpenCV installed, the numpy route is not taken
        m.setattr(images, "bgr_to_gray", None)
        full = to_gray(img)
    monkeypatch.setattr(images, "_CV2", False)
    assert np.array_equal(to_gray(img), full)


def test_sixteen_bit_scaling_equals_opencv():
    for depth in (None, 12, 10):
        top = (1 << depth) - 1 if depth else 65535
        v = np.arange(top + 1, dtype=np.uint16)[None, :]  # every value the depth holds
        assert np.array_equal(to_gray(v, bit_depth=depth),
                              cv2.convertScaleAbs(v, alpha=255.0 / top))


def test_bad_images_are_named(tmp_path):
    bad = tmp_path / "cut.png"
    good = tmp_path / "ok.png"
    Image.fromarray(_photo()).save(good)
    bad.write_bytes(good.read_bytes()[:60])
    for decoder in ("pillow", "opencv"):
        with pytest.raises(ManufacturingError, match="cut.png"):
            imread(bad, decoder=decoder)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ManufacturingError, match="text.png.*re-save"):
        imread(tmp_path / "text.png", decoder="pillow")
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(_photo()).convert("CMYK").save(cmyk)
    with pytest.raises(ManufacturingError, match="CMYK.*deepseek-manufacturing\\[video\\]"):
        imread(cmyk, decoder="pillow")
    with pytest.raises(ManufacturingError, match="decoder="):
        imread(good, decoder="imageio")
    with pytest.raises(FrameError, match="empty"):
        to_gray(np.zeros((0, 3), np.uint8))


@pytest.mark.slow
def test_without_opencv_images_score_and_video_names_the_extra(tmp_path):
    """OpenCV hidden from a child interpreter, as in the edge install: part images decode
    and score; a video, a heatmap and the stream's width say which install brings OpenCV."""
    Image.fromarray(_photo(64, 96)).save(tmp_path / "part.png")
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["cv2"] = None
        from deepseek.manufacturing.errors import ManufacturingError
        from deepseek.manufacturing.score import score_images
        from deepseek.manufacturing.sources import FrameSource
        r = score_images([{str(tmp_path)!r}], model="defect-3dcnn-lstm")
        errors = []
        for call in (lambda: FrameSource.open({str(tmp_path / "clip.mp4")!r}),
                     lambda: score_images([{str(tmp_path)!r}], heatmaps={str(tmp_path / "h")!r})):
            try:
                call()
            except ManufacturingError as exc:
                errors.append(str(exc))
        print(json.dumps({{"scored": [x.path for x in r], "errors": errors}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["scored"] == [str(tmp_path / "part.png")]
    assert len(res["errors"]) == 2
    assert all('pip install "deepseek-manufacturing[video]"' in e for e in res["errors"])


def test_a_mask_kept_under_its_photos_name_is_told_apart_by_content(tmp_path, caplog):
    """part.jpg + part.png (a binary mask): the PNG is part.jpg's mask, never a part; two
    same-named photos are both parts."""
    import logging

    from deepseek.manufacturing.images import list_images, looks_like_mask
    from deepseek.manufacturing.labelled import read_labelled

    photo = _photo(48, 64)
    Image.fromarray(photo).save(tmp_path / "part.jpg", quality=90)
    mask = np.zeros((48, 64), np.uint8)
    mask[20:24, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "part.png")
    Image.fromarray(_photo(48, 64, seed=1)).save(tmp_path / "other.jpg", quality=90)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tmp_path / "other.png")  # empty mask
    with caplog.at_level(logging.INFO, logger="deepseek.manufacturing.images"):
        names = [p.name for p in list_images(tmp_path)]
    assert names == ["other.jpg", "part.jpg"]
    assert "masks, not parts" in caplog.text
    twins = tmp_path / "twins"
    twins.mkdir()
    Image.fromarray(_photo(48, 64, seed=2)).save(twins / "twin.jpg", quality=90)
    Image.fromarray(_photo(48, 64, seed=3)).save(twins / "twin.png")  # another photo
    assert [p.name for p in list_images(twins)] == ["twin.jpg", "twin.png"]
    import shutil

    shutil.rmtree(twins)
    labelled = {i.path.name: i for i in read_labelled(tmp_path)}
    assert labelled["part.jpg"].defect and labelled["part.jpg"].source == "mask"
    assert not labelled["other.jpg"].defect and labelled["other.jpg"].source == "mask"
    assert looks_like_mask(np.dstack([mask] * 3)) and not looks_like_mask(photo)
    colour = np.zeros((48, 64, 3), np.uint8)
    colour[20:24, 10:40] = (83, 50, 250)  # CVAT's colour for a class, in BGR
    assert looks_like_mask(colour) and looks_like_mask(np.dstack([colour, colour[..., :1]]))
    two = colour.copy()
    two[30:32] = (0, 255, 0)  # a second colour: not a one-class mask
    assert not looks_like_mask(two) and not looks_like_mask(np.dstack([photo] * 3))


def test_a_pascal_voc_or_cvat_segmentation_export_reads_its_class_masks(tmp_path):
    """Pascal VOC's layout, which CVAT's "Segmentation mask" export writes: photos in
    JPEGImages/, palette PNG masks of the same stem in SegmentationClass/ (the class's
    colour on black) and SegmentationObject/ (one colour per instance). The class masks are
    the labels; neither mask folder is scored as parts (before, scoring the export's folder
    scored every mask as a part, and its photos had no label)."""
    from deepseek.manufacturing.images import list_images
    from deepseek.manufacturing.labelled import read_labelled

    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject"):
        (tmp_path / sub).mkdir()
    for i, cracked in enumerate((True, False, True)):
        Image.fromarray(_photo(48, 64, seed=i)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        index = np.zeros((48, 64), np.uint8)
        if cracked:
            index[10 + i:14 + i, 5:50] = 1
        for sub, colour in (("SegmentationClass", [250, 50, 83]),
                            ("SegmentationObject", [128, 0, 0])):
            pal = Image.fromarray(index, mode="P")
            pal.putpalette([0, 0, 0, *colour] + [0] * (256 * 3 - 6))
            pal.save(tmp_path / sub / f"{i}.png")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, True)] == [
        "JPEGImages/0.jpg", "JPEGImages/1.jpg", "JPEGImages/2.jpg"]
    items = {i.path.name: i for i in read_labelled(tmp_path / "JPEGImages")}
    assert {n: (i.defect, i.source) for n, i in items.items()} == {
        "0.jpg": (True, "mask"), "1.jpg": (False, "mask"), "2.jpg": (True, "mask")}
    assert all(i.label_path.parent.name == "SegmentationClass" for i in items.values())
    assert int((items["2.jpg"].mask > 0).sum()) == 4 * 45


def test_dagm_masks_in_a_label_folder_inside_the_image_folder(tmp_path):
    """DAGM 2007 keeps each defect's mask in Label/ inside the image folder
    (Train/Label/0002_label.PNG for Train/0002.PNG, capital suffixes): found as masks,
    never scored as parts."""
    from deepseek.manufacturing.images import list_images
    from deepseek.manufacturing.labelled import read_labelled

    train = tmp_path / "Class1" / "Train"
    (train / "Label").mkdir(parents=True)
    for i in (1, 2):
        Image.fromarray(_photo(48, 64, seed=i)).save(train / f"000{i}.PNG", format="PNG")
        mask = np.zeros((48, 64), np.uint8)
        if i == 2:
            mask[5:30, 10:20] = 255
        Image.fromarray(mask).save(train / "Label" / f"000{i}_label.PNG", format="PNG")
    assert [p.name for p in list_images(train, True)] == ["0001.PNG", "0002.PNG"]
    items = {i.path.name: (i.defect, i.source) for i in read_labelled(train)}
    assert items == {"0001.PNG": (False, "mask"), "0002.PNG": (True, "mask")}


def test_scoring_with_the_packaged_weights_warns(tmp_path, caplog):
    import logging

    from deepseek.manufacturing.score import score_images

    Image.fromarray(_photo(64, 96)).save(tmp_path / "p.png")
    with caplog.at_level(logging.WARNING, logger="deepseek.manufacturing.score"):
        score_images([tmp_path], progress=False)
    assert "synthetic line only" in caplog.text and "--model" in caplog.text


def test_a_12_bit_camera_in_16_bit_words_is_named_once(tmp_path, monkeypatch, caplog):
    """Read over the 16-bit range, 12-bit data keeps 16 gray levels: the first such file is
    named in a warning with the fix, once; full-range 16-bit files say nothing."""
    import logging

    monkeypatch.setattr(images, "_LOW_BITS_SAID", False)
    rng = np.random.default_rng(0)
    full = rng.integers(0, 65536, (20, 30)).astype(np.uint16)
    twelve = rng.integers(0, 4096, (20, 30)).astype(np.uint16)
    twelve[0, 0] = 4095
    black = np.zeros((20, 30), np.uint16)
    for name, img in (("full.png", full), ("black.png", black), ("a12.png", twelve),
                      ("b12.png", twelve)):
        cv2.imwrite(str(tmp_path / name), img)
    with caplog.at_level(logging.WARNING, logger="deepseek.manufacturing.images"):
        assert read_gray(tmp_path / "full.png").max() > 200 and not caplog.records
        assert read_gray(tmp_path / "black.png").max() == 0 and not caplog.records
        g = read_gray(tmp_path / "a12.png")
        assert g.max() == 16  # what the warning is about: 4095 * 255 / 65535, rounded
        read_gray(tmp_path / "b12.png")
    [rec] = caplog.records
    assert "a12.png: a 16-bit image whose pixels all stay under 4096 (at most 4095: a " \
        "12-bit camera's data" in rec.getMessage()
    assert "pixel * 255 / 4095" in rec.getMessage()


def test_rescale_averages_areas_the_same_with_or_without_opencv(monkeypatch):
    from deepseek.manufacturing.images import check_scale, rescale, rescale_mask, scaled_size

    photo = read_gray(sorted(SHARED_CRACKS.rglob("*.jpg"))[0]) if SHARED_CRACKS.is_dir() \
        else np.random.default_rng(0).integers(0, 256, (125, 50), np.uint8)
    x = np.tile((np.arange(8) * 30).astype(np.uint8), (4, 1))
    assert rescale(x, 0.75)[0].tolist() == [8, 45, 82, 128, 165, 202]  # area means, rounded
    assert rescale(photo, 1.0) is photo
    for s in (0.75, 0.5, 0.3):
        full = rescale(photo, s)
        assert full.shape == scaled_size(photo.shape, s) and full.dtype == np.uint8
        with monkeypatch.context() as m:
            m.setattr(images, "_CV2", False)  # the edge form: numpy, the same weights
            edge = rescale(photo, s)
        assert np.abs(full.astype(int) - edge).max() <= 1
    # enlarged: interpolated linearly (OpenCV's INTER_LINEAR), numpy's weights within one
    # gray level; a ramp stays a ramp, its ends held
    up = rescale(x, 2.0)[0].astype(int)
    assert up.shape == (16,) and up[0] == 0 and up[-1] == 210
    assert np.all(np.diff(up) >= 0) and np.abs(up[1:-1:2] - (x[0, :-1] * 0.75 + x[0, 1:] *
                                                              0.25)).max() <= 1
    for s in (1.25, 1.5, 1.37, 2.0):
        full = rescale(photo, s)
        assert full.shape == scaled_size(photo.shape, s) and full.dtype == np.uint8
        with monkeypatch.context() as m:
            m.setattr(images, "_CV2", False)
            edge = rescale(photo, s)
        assert np.abs(full.astype(int) - edge).max() <= 1
    line = np.zeros((40, 40), np.uint8)
    line[:, 21] = 1
    assert rescale_mask(line, 0.5)[:, 10].all() and rescale_mask(line, 0.5).sum() == 20
    wide = rescale_mask(line, 2.0)  # column 21 covers columns 42 and 43 at twice the size
    assert wide.shape == (80, 80) and wide[:, 42:44].all() and wide.sum() == 160
    for bad in (0.2, 2.01, True, "0.5"):
        with pytest.raises(ManufacturingError, match="scale="):
            check_scale(bad)
    # without OpenCV each output pixel reads a fixed number of input pixels: a 2 x 20,000
    # strip enlarged twice allocates about its output, not an n_in x n_out weight matrix
    import tracemalloc

    strip = np.random.default_rng(1).integers(0, 256, (2, 20_000), np.uint8)
    with monkeypatch.context() as m:
        m.setattr(images, "_CV2", False)
        for s, mask in ((2.0, False), (0.25, False), (2.0, True)):
            tracemalloc.start()
            out = rescale_mask(strip > 128, s) if mask else rescale(strip, s)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert out.shape == scaled_size(strip.shape, s)
            assert peak < 40 * out.size + (1 << 20), (s, mask, peak)


@pytest.mark.parametrize("progressive", [False, True])
def test_a_jpeg_cut_short_is_refused_by_either_decoder(tmp_path, progressive):
    """OpenCV's decoder fills the missing rows with gray and returns the picture, which would
    score as a good part; both decoders refuse it, naming the file."""
    whole = tmp_path / "part.jpg"
    Image.fromarray(_photo(120, 160)).save(whole, quality=90, progressive=progressive)
    data = whole.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(cut), cv2.IMREAD_UNCHANGED) is not None  # what is guarded against
    with pytest.raises(ManufacturingError, match=r"cut\.jpg: the JPEG is cut short"):
        imread(cut, decoder="opencv")
    with pytest.raises(ManufacturingError, match=r"cut\.jpg: Pillow cannot read"):
        imread(cut, decoder="pillow")
    # bytes after the end-of-image marker (a camera's trailer) are not a cut
    tail = tmp_path / "trailer.jpg"
    tail.write_bytes(data + b"CAMERA-TRAILER\x00\x01")
    assert np.array_equal(imread(tail, decoder="opencv"), imread(whole, decoder="opencv"))
    # a thumbnail (a whole JPEG, scan and end marker, inside an APP1 segment before the
    # picture's own scan) neither passes for the end of a cut picture nor is taken for one
    small = tmp_path / "small.jpg"
    Image.fromarray(_photo(24, 32)).save(small, quality=80)
    payload = b"Exif\x00\x00" + small.read_bytes()
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    thumbed = data[:2] + app1 + data[2:]
    (tmp_path / "thumbed.jpg").write_bytes(thumbed)
    assert np.array_equal(imread(tmp_path / "thumbed.jpg", decoder="opencv"),
                          imread(whole, decoder="opencv"))
    (tmp_path / "thumbed_cut.jpg").write_bytes(thumbed[: len(thumbed) * 2 // 3])
    with pytest.raises(ManufacturingError, match="thumbed_cut.jpg: the JPEG is cut short"):
        imread(tmp_path / "thumbed_cut.jpg", decoder="opencv")


def test_a_tiff_of_several_pages_is_refused_not_read_as_its_first(tmp_path):
    pages = [Image.fromarray(_photo(seed=k)[..., 1]) for k in range(3)]
    stack = tmp_path / "stack.tif"
    pages[0].save(stack, save_all=True, append_images=pages[1:])
    for decoder in ("opencv", "pillow"):
        with pytest.raises(ManufacturingError, match=r"stack\.tif: holds 3 pages"):
            imread(stack, decoder=decoder)
    one = tmp_path / "one.tif"
    pages[0].save(one)
    assert np.array_equal(imread(one, decoder="opencv"), imread(one, decoder="pillow"))


def test_an_empty_or_missing_file_names_itself(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for decoder in ("opencv", "pillow"):
        with pytest.raises(ManufacturingError, match="empty.png"):
            imread(empty, decoder=decoder)
        with pytest.raises(ManufacturingError, match="gone.png"):
            imread(tmp_path / "gone.png", decoder=decoder)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path, orientation, suffix):
    """A camera held on its side stores the sensor's rows and an orientation tag; viewers,
    OpenCV's gray read and labelling tools show the picture turned upright, and a mask or a
    YOLO polygon drawn on it refers to that picture: both decoders turn it the same way."""
    from PIL import ImageOps

    rgb = _photo(30, 50, seed=orientation)
    rgb[2:6, 3:12] = 255  # a corner mark, so that every turn and mirror differs
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}{suffix}"
    kw = {"quality": 95} if suffix == ".jpg" else {}
    Image.fromarray(rgb).save(path, exif=exif, **kw)
    with Image.open(path) as im:
        shown = np.array(ImageOps.exif_transpose(im))[..., ::-1]  # as displayed, BGR
    for decoder in ("opencv", "pillow"):
        got = imread(path, decoder=decoder)
        assert np.array_equal(got, shown), (decoder, orientation)
    if suffix != ".tif":  # OpenCV's own upright read (its colour read turns by the tag)
        assert np.array_equal(got, cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert (got.shape[0] == 30) == (orientation <= 4)


def test_a_picture_past_pillows_pixel_limit_is_read_upright_by_opencv(tmp_path, monkeypatch):
    """Pillow will not open a picture past its decompression-bomb limit, even for the
    orientation in its header (a 200-megapixel phone photo is past the default): OpenCV reads
    it, turned by the JPEG's EXIF segment; Pillow alone says what to install."""
    rgb = _photo(30, 50, seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "big.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    want = imread(path, decoder="opencv")
    assert want.shape == (50, 30, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1,500 pixels is past twice that
    assert np.array_equal(imread(path, decoder="opencv"), want)
    with pytest.raises(ManufacturingError, match=r"big.jpg: .*install OpenCV"):
        imread(path, decoder="pillow")


@pytest.mark.parametrize("opencv", [True, False])
def test_a_photo_sent_as_bytes_decodes_as_score_reads_its_file(tmp_path, opencv, monkeypatch):
    """What the model server decodes from a photo file a request sends (the reader the
    photo decisions declare) is what `score` reads from the file, format by format, turned
    upright by its EXIF orientation, with OpenCV and on the edge form; for a model that takes
    a camera's 16-bit words, a 16-bit file's gray words, and an 8-bit file refused."""
    from deepseek.manufacturing.images import decode_photo, one_channel

    paths = _write_cases(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_photo(29, 41)).save(tmp_path / "side.jpg", exif=exif, quality=92)
    paths.append(tmp_path / "side.jpg")
    if not opencv:
        monkeypatch.setattr(images, "_CV2", False)
    for p in paths:
        data = p.read_bytes()
        reserved: list[int] = []
        got = decode_photo(data, max_pixels=10**6, reserve=reserved.append, where=p.name)
        assert got.dtype == np.uint8 and np.array_equal(got, read_gray(p)), p.name
        assert len(reserved) == 1 and reserved[0] >= got.size, p.name
        if imread(p).dtype == np.uint16:
            words = decode_photo(data, dtype=np.uint16, where=p.name)
            assert np.array_equal(words, one_channel(imread(p))), p.name
        else:
            with pytest.raises(ManufacturingError, match=f"{p.name}: the file holds uint8 "
                                                         "pixels; this model takes a camera's "
                                                         "16-bit words"):
                decode_photo(data, dtype=np.uint16, where=p.name)
    assert decode_photo((tmp_path / "side.jpg").read_bytes()).shape == (41, 29)
    # by name through the reader registry, given a path: the file's bytes
    import deepseek

    side = tmp_path / "side.jpg"
    assert np.array_equal(deepseek.open(side, reader="part-photo"), read_gray(side))
    with pytest.raises(ManufacturingError, match="gone.jpg: cannot read the file"):
        decode_photo(tmp_path / "gone.jpg")


def test_a_photo_sent_as_bytes_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    """A picture past the pixels allowed is refused from its header, nothing decoded (a
    20 kB PNG can hold a 30,000 x 30,000 picture); a file cut short, a TIFF of several pages
    and bytes of no image format are refused by name."""
    from deepseek.errors import InputTooLargeError
    from deepseek.manufacturing.images import decode_photo

    big = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(big)
    data = big.read_bytes()
    assert len(data) < 20_000
    reserved: list[int] = []
    with monkeypatch.context() as m:
        m.setattr(images, "decode_image", None)  # never reached
        with pytest.raises(InputTooLargeError, match="request: the file is a 3000 x 2000 "
                                                     r"picture \(6000000 pixels\), over the "
                                                     "5999999"):
            decode_photo(data, max_pixels=5_999_999, reserve=reserved.append, where="request")
    assert reserved == []
    assert decode_photo(data, max_pixels=6_000_000).shape == (2000, 3000)
    jpeg = tmp_path / "part.jpg"
    Image.fromarray(_photo()).save(jpeg, quality=90)
    with pytest.raises(ManufacturingError, match="item 0: the JPEG is cut short"):
        decode_photo(jpeg.read_bytes()[:-300], where="item 0")
    pages = [Image.fromarray(_photo(seed=k)[..., 1]) for k in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ManufacturingError, match="item 0: holds 3 pages"):
        decode_photo((tmp_path / "stack.tif").read_bytes(), where="item 0")
    with pytest.raises(ManufacturingError, match=r"item 0: 5 bytes that are no image file of "
                                                 r"a format read here \(they start b'hello'\)"):
        decode_photo(b"hello", where="item 0")
    with pytest.raises(ManufacturingError, match="decodes to uint8 or uint16 gray, not float32"):
        decode_photo(jpeg.read_bytes(), dtype=np.float32)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the damaged tags
@pytest.mark.parametrize("opencv", [True, False])
def test_damaged_files_are_refused_by_name_never_a_crash(opencv, monkeypatch):
    """Bytes flipped and cut in photo files (a server request's, a damaged disk's): each is
    read or refused with an error naming it (too large when a flipped byte makes the header
    say so), never another exception (Pillow
    raised SyntaxError for a PNG chunk and TypeError for TIFF directories, which `score`
    reported as a bug and a server as a 500)."""
    import io

    from deepseek.errors import InputTooLargeError
    from deepseek.manufacturing.images import decode_photo

    if not opencv:
        monkeypatch.setattr(images, "_CV2", False)
    img = (np.arange(64 * 80 * 3) % 251).astype(np.uint8).reshape(64, 80, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds = {}
    for fmt, kw in (("PNG", {}), ("TIFF", {"exif": exif}), ("JPEG", {"exif": exif})):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **kw)
        seeds[fmt] = buf.getvalue()
    broken_chunk = bytearray(seeds["PNG"])  # Pillow: SyntaxError("broken PNG file")
    for at, value in ((36, 15), (239, 151), (111, 138)):
        broken_chunk[at] = value
    cases = [bytes(broken_chunk)]
    rng = np.random.default_rng(11)
    for data in seeds.values():
        for _ in range(300):
            d = bytearray(data)
            for _ in range(int(rng.integers(1, 12))):
                d[int(rng.integers(0, len(d)))] = int(rng.integers(0, 256))
            cases.append(bytes(d[:int(rng.integers(len(d) // 2, len(d) + 1))]))
    read = 0
    for i, data in enumerate(cases):
        try:
            out = decode_photo(data, max_pixels=10**6, where=f"case {i}")
        except (ManufacturingError, InputTooLargeError) as exc:  # a size gone wild: 413
            assert str(exc).startswith(f"case {i}: "), exc
            continue
        assert out.dtype == np.uint8 and out.ndim == 2
        read += 1
    assert read < len(cases)
    with pytest.raises(ManufacturingError, match="case 0: Pillow cannot read this image" if
                       not opencv else "case 0: "):
        decode_photo(cases[0], where="case 0")
