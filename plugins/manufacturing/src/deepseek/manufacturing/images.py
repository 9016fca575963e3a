"""Image files and pixels: the bottom of the plugin, importing nothing else from it but its
errors.

* which files are part images (:data:`IMAGE_SUFFIXES`, :func:`list_images`) and which are
  masks or labels beside them (:func:`is_label_file`) or heatmaps the plugin wrote
  (:func:`write_heatmap`, :func:`is_heatmap`);
* decoding (:func:`imread`): with OpenCV when it is installed (the full form, or the
  ``[video]`` extra, or a build of the user's own with GStreamer), else with Pillow, which is
  what the edge form (``pip install "deepseek-manufacturing[edge]"``) carries: OpenCV alone
  is larger than the whole edge budget. Both give the same array for the same file (OpenCV's
  conventions: BGR(A) channel order, 16-bit kept), turned upright by its EXIF orientation
  (:func:`upright`) as viewers and labelling tools show it, so that masks, YOLO coordinates,
  boxes and heatmaps refer to the picture the user sees; the tests check it file by file;
* any image to 8-bit gray (:func:`to_gray`): OpenCV's conversion when it is installed, else
  numpy with OpenCV's exact arithmetic.

Video files, cameras, network streams and the stream's crack geometry need OpenCV:
:func:`require_cv2` names the install when it is missing.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable, Iterable
from itertools import takewhile
from pathlib import Path
from typing import Any

import numpy as np

from deepseek.manufacturing.errors import FrameError, ManufacturingError
from deepseek.manufacturing.formats import BIT_DEPTHS, IMAGE_SUFFIXES, SCALE_RANGE
from deepseek.paths import files_below, is_pattern, written_whole

log = logging.getLogger(__name__)


def require_cv2(what: str) -> Any:
    """OpenCV (``cv2``), or a :class:`ManufacturingError` naming ``what`` needed it and the
    install that brings it."""
    try:
        import cv2
    except ImportError as exc:
        raise ManufacturingError(
            f"{what} needs OpenCV, which the edge install leaves out: pip install "
            '"deepseek-manufacturing[video]" (or any OpenCV build of your own, e.g. one with '
            "GStreamer)") from exc
    return cv2


_CV2: Any = None  # OpenCV once found (False when it is not installed)


def _cv2_or_none() -> Any:
    global _CV2
    if _CV2 is None:
        try:
            import cv2

            _CV2 = cv2
        except ImportError:
            _CV2 = False
    return _CV2 or None


def have_cv2() -> bool:
    """Whether OpenCV can be imported (looked up once)."""
    return _cv2_or_none() is not None


# -- decoding -------------------------------------------------------------------------------
def imread(path: str | Path, *, decoder: str = "auto", data: bytes | None = None
           ) -> np.ndarray:
    """The pixels of an image file as OpenCV's ``imread(path, IMREAD_UNCHANGED)`` returns
    them: gray ``(h, w)``, BGR ``(h, w, 3)`` or BGRA ``(h, w, 4)``; uint8, uint16 or float32;
    then turned upright by the file's EXIF orientation (which that flag leaves as stored).
    A JPEG cut short and a TIFF of several pages are refused.

    ``decoder``: ``"auto"`` (OpenCV when installed, else Pillow), ``"opencv"`` or
    ``"pillow"``. ``data``: the file's bytes, read already (a watch digests the bytes it
    scores). Raises :class:`ManufacturingError` naming the file when it cannot be read."""
    path = Path(path)
    return decode_image(file_bytes(path) if data is None else data, str(path),
                        decoder=decoder, path=path)


def file_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; :class:`ManufacturingError` naming it when it cannot be
    read (gone, a folder, not allowed)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ManufacturingError(f"{path}: cannot read the file ({exc.strerror})") from None


def decode_image(data: bytes, where: str, *, decoder: str = "auto",
                 path: Path | None = None) -> np.ndarray:
    """The pixels of an encoded image (a file's bytes), as :func:`imread` gives them for the
    file; errors name ``where``. ``path``: the file the bytes are from, where there is one
    (OpenCV counts a TIFF's pages from it)."""
    if decoder not in ("auto", "opencv", "pillow"):
        raise ManufacturingError(f"decoder={decoder!r}: use auto, opencv or pillow")
    if decoder == "opencv" or (decoder == "auto" and have_cv2()):
        cv2 = require_cv2("decoder='opencv'")
        _check_complete(where, data)
        orientation = exif_orientation(data)
        if data[:4] in _TIFF_MAGIC and orientation != 1:
            # OpenCV's TIFF decoder turns some orientations itself and fails on the others
            return _pillow_read(data, where)
        buf = np.frombuffer(data, np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
        if img is None or img.size == 0:
            raise ManufacturingError(f"{where}: OpenCV cannot read this image (damaged, or a "
                                     "format it does not know); re-save it as PNG or remove "
                                     "it")
        if data[:4] in _TIFF_MAGIC:
            _one_page(where, int(cv2.imcount(str(path))) if path is not None
                      else _tiff_pages(data))
        return upright(img, orientation)
    return _pillow_read(data, where)


def _tiff_pages(data: bytes) -> int:
    """The pages (images) of an encoded TIFF, as Pillow counts them from its directories."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(getattr(im, "n_frames", 1))
    except Exception:  # directories Pillow cannot walk: the page OpenCV read
        return 1


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of an encoded image, 1 when it has none: how a camera held
    on its side says which way is up. Read from the header only (Pillow opens lazily)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            value = im.getexif().get(0x0112, 1)
    except Image.DecompressionBombError:
        # Pillow refuses to open a picture past its pixel limit even for its header (a
        # 200-megapixel phone photo): read a JPEG's EXIF segment alone
        value = _jpeg_exif_orientation(data)
    except Exception:  # any header Pillow cannot parse: no orientation told
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _jpeg_exif_orientation(data: bytes) -> int:
    """The orientation in a JPEG's EXIF segment (APP1, near the start), 1 without one."""
    from PIL import Image

    if data[:2] != b"\xff\xd8":
        return 1
    at = data.find(b"Exif\x00\x00", 2, 1 << 17)
    if at < 4 or data[at - 4:at - 2] != b"\xff\xe1":
        return 1
    end = at - 2 + int.from_bytes(data[at - 2:at], "big")
    exif = Image.Exif()
    try:
        exif.load(data[at:end])
    except (OSError, ValueError, SyntaxError, KeyError):
        return 1
    return exif.get(0x0112, 1)


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """``img`` (rows, columns[, channels]) as it is displayed under EXIF ``orientation``: as
    viewers, OpenCV's colour and gray reads and labelling tools (whose masks and YOLO
    coordinates refer to that picture) show it. Any value but 2-8 (1, none, a damaged tag)
    leaves it as stored."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
           4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
           6: lambda a: a.swapaxes(0, 1)[:, ::-1], 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
           8: lambda a: a.swapaxes(0, 1)[::-1]}
    op = ops.get(orientation) if isinstance(orientation, int) else None
    return img if op is None else np.ascontiguousarray(op(img))


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def _check_complete(where: str, data: bytes) -> None:
    """Refuse a JPEG cut short (a copy or a camera's write interrupted): OpenCV's decoder
    fills what is missing with gray and returns it (Pillow refuses it), which would score as
    a good part. Its last scan (the last start-of-scan marker; inside a scan every 0xFF byte
    is followed by 0 or a restart marker) must be followed by the end-of-image marker."""
    if data[:3] != b"\xff\xd8\xff":
        return
    last_scan = data.rfind(b"\xff\xda")
    if last_scan >= 0 and data.find(b"\xff\xd9", last_scan) < 0:
        raise ManufacturingError(f"{where}: the JPEG is cut short (no end-of-image marker after "
                                 f"its last scan, {len(data)} bytes): copy it again from its "
                                 "source, or remove it")


def _one_page(where: str, pages: int) -> None:
    """Refuse an image file of several pages (a TIFF stack): one file is one part photo,
    and reading its first page only would leave the others unscored without a word."""
    if pages > 1:
        raise ManufacturingError(f"{where}: holds {pages} pages (images); one file is one part "
                                 "photo here: save each page as a file of its own (e.g. "
                                 "tiffsplit, or Pillow's ImageSequence) and give those")


def _pillow_read(data: bytes, where: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "TIFF":
                _one_page(where, int(getattr(im, "n_frames", 1)))
            im.load()
            # after load: Pillow's TIFF reader turns the pixels itself and drops the tag
            orientation = im.getexif().get(0x0112, 1)
            arr = _pillow_pixels(im)
    except Image.DecompressionBombError as exc:
        raise ManufacturingError(f"{where}: {exc}; Pillow reads no picture that large: install "
                                 'OpenCV (pip install "deepseek-manufacturing[video]") to read '
                                 "it") from None
    except Exception as exc:  # a damaged file raises many kinds in Pillow
        raise ManufacturingError(f"{where}: Pillow cannot read this image "
                                 f"({type(exc).__name__}: {exc}); re-save it as PNG or remove "
                                 "it") from exc
    if arr is None:
        raise ManufacturingError(f"{where}: pixel mode {im.mode} is not read without OpenCV; "
                                 'install it (pip install "deepseek-manufacturing[video]") or '
                                 "re-save the image as 8- or 16-bit gray or RGB PNG")
    return upright(arr, orientation)


def _pillow_pixels(im: Any) -> np.ndarray | None:
    """A loaded Pillow image's pixels laid out as OpenCV's IMREAD_UNCHANGED gives them, or
    None for a mode read only with OpenCV."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode in ("L", "I;16", "I;16B", "I;16L", "F"):
        arr = np.array(im)
        return arr.astype(np.uint16) if mode.startswith("I;16") else arr
    if mode == "I":  # 32-bit integers: how Pillow opens a 16-bit PGM, read as 16 bits
        arr = np.array(im)
        return arr.astype(np.uint16) if arr.size and 0 <= arr.min() and \
            arr.max() <= 65535 else None
    if mode == "LA":  # OpenCV gives gray with alpha as BGRA
        g, a = (np.array(c) for c in im.split())
        return np.dstack([g, g, g, a])
    if mode in ("RGB", "RGBA"):
        arr = np.array(im)
        return np.ascontiguousarray(arr[..., [2, 1, 0, 3][:arr.shape[2]]])
    return None


def read_gray(path: str | Path, *, decoder: str = "auto", bit_depth: int | None = None,
              data: bytes | None = None) -> np.ndarray:
    """An image file as 8-bit gray (:func:`imread`, then :func:`to_gray`). A 16-bit file is
    read over the range of ``bit_depth`` bits (a 12-bit camera's data in 16-bit words: 12;
    a pixel above it is refused), by default over the full 16 bits; then the first one whose
    pixels all stay under 4096 (10- or 12-bit data, which would show as gray levels 0-15) is
    named in a warning with the fix. 8-bit files are read as they are either way. ``data``:
    the file's bytes, read already."""
    img = imread(path, decoder=decoder, data=data)
    if img.dtype == np.uint16 and bit_depth is None:
        _warn_low_bits(img, path)
    return to_gray(img, str(path), bit_depth)


#: the bytes a decoded pixel holds per channel, by Pillow's mode (other modes: 1)
_MODE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def decode_photo(data: bytes | str | os.PathLike, *, dtype: Any = np.uint8,
                 max_pixels: int | None = None, reserve: Callable[[int], None] | None = None,
                 where: str | None = None) -> np.ndarray:
    """An encoded part photo (a JPEG, PNG, TIFF, BMP, WebP, PNM or JPEG 2000 file's bytes)
    as the gray pixels a photo decision takes, read as ``score`` reads the file: turned
    upright by its EXIF orientation, colour converted with OpenCV's arithmetic, a JPEG cut
    short or a TIFF of several pages refused. ``dtype`` uint8: 8-bit gray (:func:`read_gray`);
    uint16: a camera's 16-bit words as they are (gray at 16 bits; a model trained with
    ``--bit-depth`` scales them in its graph as ``score`` scales the file), where a file of
    8-bit pixels is refused. The reader of kind ``encoded`` the photo decisions declare
    (``deepseek serve`` decodes a file sent as BYTES with it); given a path (``deepseek
    read FILE --reader part-photo``), the file's bytes.

    The header is read first: a picture of more than ``max_pixels`` pixels is refused with
    :class:`~deepseek.errors.InputTooLargeError` before any of it is decoded, and
    ``reserve(nbytes)`` is told what decoding will hold (about) before it starts. Errors
    name ``where``."""
    from PIL import Image, UnidentifiedImageError

    from deepseek.errors import InputTooLargeError

    if isinstance(data, (str, os.PathLike)):
        where = where or str(data)
        data = file_bytes(data)
    where = where or "photo"
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ManufacturingError(f"{where}: a photo decodes to uint8 or uint16 gray, not "
                                 f"{dtype}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            (width, height), mode, bands = im.size, im.mode, len(im.getbands())
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"{where}: {exc}; send a smaller photo, or its pixels as a "
                                 "tensor") from None
    except UnidentifiedImageError:
        raise ManufacturingError(f"{where}: {len(data)} bytes that are no image file of a "
                                 f"format read here (they start {data[:8]!r}); send the "
                                 "photo as JPEG, PNG, TIFF, BMP, WebP, PNM or JPEG 2000") from None
    except Exception as exc:  # a damaged header raises many kinds in Pillow
        raise ManufacturingError(f"{where}: the image file's header cannot be read "
                                 f"({type(exc).__name__}: {exc}); send the photo as JPEG, PNG, "
                                 "TIFF, BMP, WebP, PNM or JPEG 2000") from None
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise InputTooLargeError(f"{where}: the file is a {width} x {height} picture "
                                 f"({pixels} pixels), over the {max_pixels} this server "
                                 "takes for it (its cap per input, less the request's earlier "
                                 "files); send a smaller photo, or fewer per request (the "
                                 "header is read, nothing decoded)")
    if reserve is not None:  # the decoded channels twice (Pillow's copies), and the gray
        reserve(pixels * (2 * max(bands, 3 if mode == "P" else 1) * _MODE_BYTES.get(mode, 1)
                          + dtype.itemsize))
    img = decode_image(data, where)
    if img.shape[0] * img.shape[1] != pixels:  # the decoder read other sizes than the header
        raise ManufacturingError(f"{where}: the header says {width} x {height}, the pixels "
                                 f"decode to {img.shape[1]} x {img.shape[0]}: a damaged or "
                                 "inconsistent file; re-save it")
    if dtype == np.uint8:
        if img.dtype == np.uint16:
            _warn_low_bits(img, where)
        return to_gray(img, where)
    if img.dtype != np.uint16:
        raise ManufacturingError(f"{where}: the file holds {img.dtype} pixels; this model "
                                 "takes a camera's 16-bit words (it was trained with "
                                 "--bit-depth): send the camera's 16-bit image (PNG or TIFF)")
    return np.ascontiguousarray(one_channel(img, where))


def check_bit_depth(bit_depth: int | None) -> int | None:
    """``bit_depth`` (None: the full 16 bits), or a :class:`ManufacturingError` when it is
    not a whole number of bits from 8 to 16."""
    lo, hi = BIT_DEPTHS
    if bit_depth is None:
        return None
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, int) or \
            not lo <= bit_depth <= hi:
        raise ManufacturingError(f"bit_depth={bit_depth!r}: give the bits a 16-bit image's "
                                 f"pixels hold, {lo} to {hi} (12 for a 12-bit camera's data "
                                 "in 16-bit words)")
    return bit_depth


def stored_setting(meta: dict[str, Any], key: str, where: str | Path) -> Any:
    """A setting that decides how a model's photos are read, from what training stored with
    it (``meta``): ``scale`` in a network's extra (1 when none is stored), ``bit_depth`` in
    its extra or a good-parts model's metadata (None: the full 16 bits). A stored value
    that no training writes (a file changed after training) is a
    :class:`ManufacturingError` naming ``where``: the photos are never read some other
    way in silence."""
    check, default = {"scale": (check_scale, 1.0), "bit_depth": (check_bit_depth, None)}[key]
    value = meta.get(key)
    if value is None:
        return default
    try:
        return check(value)
    except ManufacturingError as exc:
        raise ManufacturingError(f"{where}: the stored {key} is not one training writes "
                                 f"({exc}); the file was changed after training: train the "
                                 "model again, or restore the file") from None


#: whether :func:`_warn_low_bits` has spoken in this process (once is enough: a camera's
#: images are all alike)
_LOW_BITS_SAID = False


def _warn_low_bits(img: np.ndarray, path: str | Path) -> None:
    """Warn, once, of a 16-bit image whose pixels all stay under 4096: read over the 16-bit
    range it keeps 16 gray levels or fewer, and a faint defect can vanish in the rounding."""
    global _LOW_BITS_SAID
    top = int(img.max()) if img.size else 0
    if _LOW_BITS_SAID or top >= 4096 or top == 0:  # all black: nothing to tell by
        return
    _LOW_BITS_SAID = True
    bits = top.bit_length()
    log.warning("%s: a 16-bit image whose pixels all stay under 4096 (at most %d: a %d-bit "
                "camera's data in 16-bit words?) is read over the full 16-bit range, as gray "
                "levels 0-%d, where a faint defect can vanish in the rounding; if the camera "
                "gives %d bits, train with --bit-depth %d (the model keeps it, and score and "
                "calibrate read its photos the same way), or convert the images to 8 bits "
                "over that range (pixel * 255 / %d) (said once)", path, top, bits,
                round(top * 255 / 65535), bits, bits, (1 << bits) - 1)


# -- pixels -----------------------------------------------------------------------------------
# OpenCV's BGR -> gray weights for 8- and 16-bit images: 0.114, 0.587, 0.299 in 15-bit
# fixed point, rounded
_GRAY_B, _GRAY_G, _GRAY_R, _GRAY_SHIFT = 3735, 19235, 9798, 15


def bgr_to_gray(img: np.ndarray) -> np.ndarray:
    """BGR or BGRA (alpha ignored) to gray as OpenCV's ``cvtColor`` computes it: 8- and
    16-bit in 15-bit fixed point with rounding, float with the float weights. On numpy (the
    edge form has no OpenCV); :func:`to_gray` calls OpenCV itself when it is installed, which
    is an order of magnitude faster (a stream's grabber converts every frame)."""
    b, g, r = img[..., 0], img[..., 1], img[..., 2]
    if img.dtype == np.uint8 or img.dtype == np.uint16:
        # the weights sum to 2**15, so 65535 * 2**15 + the rounding half fits in uint32
        acc = b.astype(np.uint32) * np.uint32(_GRAY_B)
        acc += g.astype(np.uint32) * np.uint32(_GRAY_G)
        acc += r.astype(np.uint32) * np.uint32(_GRAY_R)
        acc += np.uint32(1 << (_GRAY_SHIFT - 1))
        acc >>= np.uint32(_GRAY_SHIFT)
        return acc.astype(img.dtype)
    f = img.dtype.type
    return (b * f(0.114) + g * f(0.587) + r * f(0.299)).astype(img.dtype)


def one_channel(img: np.ndarray | None, where: str = "frame") -> np.ndarray:
    """An image's gray channel at its own depth: BGR/BGRA converted (OpenCV's arithmetic),
    a single channel taken as it is. Raises :class:`FrameError` for an empty frame or one
    that is not 1, 3 or 4 channels."""
    if img is None or img.size == 0:
        raise FrameError(f"{where}: empty frame")
    if img.ndim == 3:
        ch = img.shape[2]
        if ch == 1:
            return img[:, :, 0]
        if ch in (3, 4):
            cv2 = _cv2_or_none()
            if cv2 is not None and img.dtype in (np.uint8, np.uint16):
                return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if ch == 3 else cv2.COLOR_BGRA2GRAY)
            return bgr_to_gray(img)
        raise FrameError(f"{where}: {ch} channels; expected 1 (gray), 3 (BGR) or 4 (BGRA)")
    if img.ndim != 2:
        raise FrameError(f"{where}: array of shape {img.shape} is not an image")
    return img


def to_gray(img: np.ndarray | None, where: str = "frame", bit_depth: int | None = None
            ) -> np.ndarray:
    """Any image as 8-bit grayscale: BGR/BGRA converted, 16-bit scaled by ``bit_depth``
    (default: the full 16-bit range), float taken as 0..1 when its maximum is at most 1,
    else as 0..255. Raises :class:`FrameError` for an empty or unsupported frame, for
    16-bit pixels over the ``bit_depth`` given, and for float pixels outside 0..255 or not
    finite (never clipped into gray levels)."""
    img = one_channel(img, where)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        top = (1 << bit_depth) - 1 if bit_depth else 65535
        if bit_depth and int(img.max()) > top:  # never saturated into white
            raise FrameError(f"{where}: 16-bit pixels reach {int(img.max())}, over the "
                             f"{bit_depth}-bit range given (0-{top}); give the sensor's bit "
                             "depth (16 when its values fill the 16-bit words, as some "
                             "cameras shift them)")
        # |x * alpha| rounded half to even, in float32 (OpenCV's convertScaleAbs)
        scaled = np.abs(img.astype(np.float32) * np.float32(255.0 / top))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if img.dtype in (np.float32, np.float64):
        # a float image has no stated range: 0..1 and 0..255 are the two in use; anything
        # else (or a NaN) would be clipped into gray levels that are not the picture
        if not np.isfinite(img).all():
            raise FrameError(f"{where}: float pixels include NaN or infinity; re-save the "
                             "image as 8- or 16-bit integers")
        lo, hi = float(img.min()), float(img.max())
        if lo < 0.0 or hi > 255.0:
            raise FrameError(f"{where}: float pixels span {lo:.6g} to {hi:.6g}, outside both "
                             "0..1 and 0..255, so their gray levels are not known; re-save "
                             "the image as 8- or 16-bit integers, or as float scaled to 0..1")
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(img * scale + 0.5, 0, 255).astype(np.uint8)
    raise FrameError(f"{where}: pixel type {img.dtype} is not supported; use 8- or 16-bit "
                     "integers or float")


# -- scale ------------------------------------------------------------------------------------

def check_scale(scale: float) -> float:
    """``scale`` as a float, or a :class:`ManufacturingError` when it is outside
    :data:`SCALE_RANGE`."""
    lo, hi = SCALE_RANGE
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not lo <= scale <= hi:
        raise ManufacturingError(f"scale={scale!r}: give an image scale from {lo} to {hi} "
                                 "(1: the images as they are)")
    return float(scale)


def scaled_size(shape: tuple[int, ...], scale: float) -> tuple[int, int]:
    """``(h, w)`` of an image of ``shape`` at ``scale`` (rounded, at least 1 x 1)."""
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def resize_axis(a: np.ndarray, axis: int, scale: float, area: bool | None = None
                ) -> np.ndarray:
    """``a`` (float32) resized along ``axis`` to ``max(1, round(n * scale))`` without OpenCV:
    ``area`` (default: when smaller), each output the area-weighted mean of the inputs under
    it, output i spanning input ``[i r, (i + 1) r)`` with ``r = n / n_out`` (OpenCV's
    ``INTER_AREA``); else linear between the two nearest pixel centres, output i at input
    ``(i + 0.5) r - 0.5``, the edge pixels repeated beyond the first and last centre
    (``INTER_LINEAR``). Each output reads a fixed number of inputs, so memory follows the
    output. The photo decision's graph (:func:`deepseek.manufacturing.model._resize_axis`)
    does the same arithmetic in the same order, so the two agree to the bit."""
    n_in = a.shape[axis]
    n_out = max(1, round(n_in * scale))
    ratio = n_in / n_out
    i = np.arange(n_out, dtype=np.float64)
    last = float(n_in - 1)
    shape = [1] * a.ndim
    shape[axis] = -1
    if scale < 1 if area is None else area:  # an output touches < ceil(r) + 2 inputs
        lo, hi = i * ratio, (i + 1) * ratio
        first = np.floor(lo)
        out = None
        for k in range(int(np.ceil(1.5 / min(scale, 1.0))) + 2):
            j = first + k
            share = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / ratio
            term = np.take(a, np.minimum(j, last).astype(np.int64), axis=axis) * \
                share.astype(np.float32).reshape(shape)
            out = term if out is None else out + term
        return out
    pos = (i + 0.5) * ratio - 0.5
    below = np.floor(pos)
    frac = np.where((below < 0) | (below >= last), 0.0, pos - below)
    below = np.minimum(np.maximum(below, 0), last)
    f = frac.astype(np.float32).reshape(shape)
    return (np.take(a, below.astype(np.int64), axis=axis) * (1 - f)
            + np.take(a, np.minimum(below + 1, last).astype(np.int64), axis=axis) * f)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """A gray image at ``scale``: smaller (< 1), each output pixel the area-weighted mean of
    the input pixels under it (OpenCV's ``INTER_AREA``); larger (> 1), interpolated linearly
    between the nearest input pixels (``INTER_LINEAR``), so a thin crack widens without
    blocks. OpenCV when it is installed, else the same weights on numpy (the edge form;
    equal within one gray level, tested). ``scale == 1``: the image itself. Masks:
    :func:`rescale_mask`."""
    if scale == 1:
        return image
    h, w = scaled_size(image.shape, scale)
    up = scale > 1
    cv2 = _cv2_or_none()
    if cv2 is not None:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR if up
                          else cv2.INTER_AREA)
    f = resize_axis(resize_axis(image.astype(np.float32), 0, scale), 1, scale)
    return np.clip(np.rint(f), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def rescale_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """A binary mask at ``scale`` (uint8 0/1): a pixel is marked when any marked input pixel
    lies under it (thin lines survive a reduction; enlarged, a marked pixel covers the
    output pixels over it)."""
    if scale == 1:
        return mask
    m = (mask > 0).astype(np.float32)
    return (resize_axis(resize_axis(m, 0, scale, area=True), 1, scale, area=True) > 1e-6
            ).astype(np.uint8)


# -- which files are part images ------------------------------------------------------------
def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


#: stems ending like these, or files under folders named like these, are labels, not images
LABEL_STEM_ENDINGS = ("_mask", "-mask", "_masks", "_label", "-label", "_labels", "_gt",
                      "-gt", "_seg", "_annotation")
LABEL_FOLDERS = {"mask", "masks", "label", "labels", "gt", "groundtruth", "ground_truth",
                 "annotations", "segmentation", "segmentationclass", "segmentationobject"}


def is_label_file(p: Path, root: Path | None = None) -> bool:
    """Whether an image file is a mask or label rather than a part image: its stem ends with
    ``_mask``, ``-mask``, ``_masks``, ``_label(s)``, ``_gt``, ``-gt``, ``_seg`` or
    ``_annotation`` (any case), or a folder between ``root`` and it is named ``mask(s)``,
    ``label(s)``, ``gt``, ``groundTruth``, ``ground_truth``, ``annotations``,
    ``segmentation``, or Pascal VOC's ``SegmentationClass`` or ``SegmentationObject``."""
    return p.stem.lower().endswith(LABEL_STEM_ENDINGS) or in_label_folder(p.parent, root)


def in_label_folder(folder: Path, root: Path | None = None) -> bool:
    """Whether ``folder``, or a folder between ``root`` and it (without ``root``: its own
    name), is named as masks and labels are kept (:data:`LABEL_FOLDERS`, any case)."""
    parts = folder.relative_to(root).parts if root is not None and \
        folder.is_relative_to(root) else folder.parts[-1:]
    return any(part.lower() in LABEL_FOLDERS for part in parts)


def looks_like_mask(img: np.ndarray) -> bool:
    """Pixels that are a mask, not a photo: at most two values or colours, one of them black
    (a binary mask, whatever its foreground value, or a one-class colour mask as Pascal VOC
    and CVAT save them, a palette PNG read as colour)."""
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 1:
            img = img[:, :, 0]
        else:  # each colour as one number
            wide = img.astype(np.uint64)
            img = sum(wide[:, :, c] << np.uint64(16 * c) for c in range(img.shape[2]))
    values = np.unique(img)
    return len(values) <= 2 and values[0] == 0


def same_stem_masks(files: list[Path]) -> set[Path]:
    """Of image files that share a folder and a stem (``part.jpg`` beside ``part.png``), the
    ones whose content is a binary mask while another of the group is not: the masks that
    some data sets keep beside each photo under the photo's own name."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for p in files:
        groups.setdefault((p.parent, p.stem.lower()), []).append(p)
    masks: set[Path] = set()
    for group in groups.values():
        if len(group) < 2:
            continue
        flags = {}
        for p in group:
            try:
                flags[p] = looks_like_mask(imread(p))
            except ManufacturingError:
                flags[p] = False
        if any(flags.values()) and not all(flags.values()):
            masks |= {p for p, is_mask in flags.items() if is_mask}
    return masks


#: the PNG text entry that marks a heatmap ``score --heatmaps`` wrote (:func:`write_heatmap`)
HEATMAP_TEXT = ("Software", "deepseek-manufacturing score --heatmaps")


def write_heatmap(path: str | Path, overlay_bgr: np.ndarray) -> Path:
    """Write a heatmap overlay (BGR, as OpenCV draws it) as a PNG marked by
    :data:`HEATMAP_TEXT`, so that a folder holding it is never read as one of its parts."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ManufacturingError(f"{path}: heatmaps are PNG files; name it .png")
    info = PngImagePlugin.PngInfo()
    info.add_text(*HEATMAP_TEXT)
    try:  # whole or not at all: a display that shows the newest heatmap never reads half
        with written_whole(path) as tmp:  # of one, and a full disk leaves no stub
            Image.fromarray(np.ascontiguousarray(overlay_bgr[..., ::-1])).save(
                tmp, format="PNG", pnginfo=info, compress_level=1)
    except OSError as exc:
        raise ManufacturingError(f"{path}: could not write the heatmap "
                                 f"({exc.strerror or exc})") from exc
    return path


def is_heatmap(p: Path) -> bool:
    """Whether ``p`` is a heatmap ``score --heatmaps`` wrote (its PNG text entry; only the
    file's header is read)."""
    if p.suffix.lower() != ".png":
        return False
    from PIL import Image

    try:
        with Image.open(p) as im:
            return im.info.get(HEATMAP_TEXT[0]) == HEATMAP_TEXT[1]
    except Exception:  # not a readable PNG: decoding it says what is wrong, where it is read
        return False


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """The part images of a folder (``recursive``: and its subfolders) in natural order
    (:func:`part_images`)."""
    return part_images(files_below(folder) if recursive else folder.iterdir(), folder)


def part_images(found: Iterable[Path], folder: Path) -> list[Path]:
    """The part images among the paths ``found`` below ``folder``, in natural order, without
    masks and labels: by name (:func:`is_label_file`, folders counted from ``folder``), and
    by content where a mask shares its photo's name (:func:`same_stem_masks`); heatmaps
    ``score --heatmaps`` wrote there are left out too, with a warning (:func:`is_heatmap`).
    Hidden files and folders (names from a dot: the ``._photo.jpg`` a Mac leaves beside
    each photo on a shared or USB drive, a file manager's ``.thumbnails/``) are not parts
    either, as a shell's ``*`` passes them over; a link to an image that no longer exists
    is named in a warning."""
    found = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
    broken = [p for p in found if p.is_symlink() and not p.exists()]
    if broken:  # a photo linked in whose file is gone is a photo missing, not nothing
        log.warning("%s: %d link(s) to image files that no longer exist are left out (e.g. "
                    "%s -> %s)", folder, len(broken), _below(broken[0], folder),
                    os.readlink(broken[0]))
    files = [p for p in found if p.is_file() and not is_label_file(p, folder)]
    hidden = [p for p in files if any(x.startswith(".") for x in _below(p, folder).parts)]
    if hidden:
        log.info("%s: %d hidden file(s) left out (e.g. %s)", folder, len(hidden),
                 _below(hidden[0], folder))
        skip = set(hidden)
        files = [p for p in files if p not in skip]
    heat = {p for p in files if is_heatmap(p)}
    if heat:
        log.warning("%s: %d heatmap(s) written by `score --heatmaps` are not parts and are left "
                    "out (e.g. %s); write heatmaps outside the folders of part images",
                    folder, len(heat), min(heat))
        files = [p for p in files if p not in heat]
    masks = same_stem_masks(files)
    if masks:
        log.info("%s: %d mask(s) kept beside their photo under the same name (e.g. %s) are "
                 "masks, not parts", folder, len(masks), sorted(masks)[0].name)
    return sorted((p for p in files if p not in masks),
                  key=lambda p: [_natural_key(Path(x)) for x in _below(p, folder).parts])


def _below(p: Path, folder: Path) -> Path:
    """``p`` relative to ``folder`` where it lies below it, else as it is."""
    return p.relative_to(folder) if p.is_relative_to(folder) else p


def image_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Image files as given, and the part images of each folder (recursive). A pattern that
    names no file itself (``photos/*.png``, ``line3/**/*.jpg``, ``lines/*``: quoted, or from
    a Windows prompt, which does not expand them) stands for the image files it matches
    (:func:`deepseek.paths.glob_paths`), in natural order as a folder's, masks, labels,
    heatmaps and hidden files left out as in a folder, and for the part images of the
    folders it matches, as a shell's expansion would. An image that two of ``paths`` reach
    (a folder and a file or subfolder in it) is listed once, where first reached."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if not p.exists() and is_pattern(str(item)):
            from deepseek.paths import glob_paths

            matched = [Path(m) for m in glob_paths(str(item))]
            # the folder the pattern starts from: mask folders below it are not parts
            fixed = list(takewhile(lambda x: not is_pattern(x), Path(item).parts))
            base = Path(*fixed) if fixed else Path(".")
            files = part_images([m for m in matched if not m.is_dir()], base)
            for folder in (m for m in matched if m.is_dir()):
                if not in_label_folder(folder, base):
                    files += list_images(folder, recursive=True)
            if not files:
                raise ManufacturingError(f"{item}: the pattern matches no part image "
                                         f"({len(matched)} match(es) in all; "
                                         f"{', '.join(sorted(IMAGE_SUFFIXES))})")
            out += files
        elif p.is_dir():
            found = list_images(p, recursive=True)
            if not found:
                raise ManufacturingError(f"{p}: no part images in this folder or below it "
                                         f"({', '.join(sorted(IMAGE_SUFFIXES))}; masks and "
                                         "labels are skipped)")
            out += found
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise ManufacturingError(f"{p}: not an image file "
                                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            out.append(p)
        elif p.exists():  # a named pipe, a socket, a device: a read could wait forever
            raise ManufacturingError(f"{p}: not a regular file (a named pipe, a socket or a "
                                     "device); give the photo's file")
        else:
            raise ManufacturingError(f"{p}: no such file or folder")
    seen: set[str] = set()  # the same path twice; two links to one photo stay two parts
    once = [q for q in out
            if not (os.path.abspath(q) in seen or seen.add(os.path.abspath(q)))]
    if len(once) < len(out):
        log.info("%d image(s) reached by more than one of the paths given are scored once",
                 len(out) - len(once))
    return once
