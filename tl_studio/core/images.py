"""Image files: recognising them by content, checking them cheaply, and loading them as RGB.

Everything in the app that reads pixels goes through :func:`load_rgb`, so that training, prediction and
the GUI see the same upright 8-bit RGB image whatever the file's format, mode or EXIF orientation.
:func:`check_image` is the cheap header-level check the dataset scan runs on every file: it reads the
first and last bytes, never decodes pixels, and leaves the rare doubtful file to a full decode.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from PIL import Image, ImageOps

# Every phone camera's full-size photo (200 MP sensors write 16320 x 12240 = 199.7 million pixels; Pillow's
# own default of 89.5 million refused the 12000 x 9000 photos of 108 MP phones), and still a stop for
# decompression bombs: a tiny file that declares billions of pixels. An image this size decodes to at most
# 750 MB of RGB; the loaders decode a JPEG at 1/2, 1/4 or 1/8 of it (see load_rgb).
DEFAULT_MAX_PIXELS = 250_000_000
# Pillow refuses twice its MAX_IMAGE_PIXELS itself, whatever our limit: at its default, at 179 million.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

# We enforce our own pixel limit and report it as a problem with a reason; Pillow's warning for the
# same image would only repeat it on stderr.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF")
NOT_AN_IMAGE = "Not an image file: its content is not JPEG, PNG, GIF, BMP, TIFF, WebP or AVIF"
HEIC_NOT_SUPPORTED = "HEIC photo: this format cannot be read; convert it to JPEG (most photo apps can)"
EMPTY_FILE = "Empty file (0 bytes)"
TRUNCATED = "Truncated image: the file ends before the image data does (an incomplete download or copy?)"

_MAGIC_NUMBERS = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
)
# ISO media files (after "ftyp"): AVIF, which Pillow reads, and the HEIC of phones, which it cannot.
_AVIF_BRANDS = frozenset((b"avif", b"avis"))
_HEIC_BRANDS = frozenset((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"))
# Images of formats the app does not read, known by their first bytes: said as an image to convert, not
# as "not an image file" (the user can see it is one).
_OTHER_IMAGE_MAGIC = (
    (b"\x00\x00\x00\x0cjP  \r\n", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"), (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"8BPS", "Photoshop (PSD)"), (b"\x00\x00\x01\x00", "Windows icon (ICO)"), (b"icns", "macOS icon (ICNS)"),
    (b"qoif", "QOI"), (b"DDS ", "DirectDraw Surface (DDS)"), (b"%!PS", "PostScript (EPS)"),
    (b"\xc5\xd0\xd3\xc6", "PostScript (EPS)"), (b"\x01\xda", "SGI"), (b"gimp xcf", "GIMP (XCF)"),
)
_NETPBM = re.compile(rb"P[1-6]\s+[#0-9]")  # "P6", white space, then its width or a comment: a text may start "P1"
_OTHER_IMAGE_SUFFIXES = {".tga": "TGA", ".pcx": "PCX", ".svg": "SVG", ".xcf": "GIMP (XCF)", ".psd": "Photoshop (PSD)"}
# The header sizes Pillow's BMP reader understands; "BM" alone is too weak a signature (text starts so).
_BMP_HEADER_SIZES = frozenset((12, 40, 52, 56, 64, 108, 124))
# Enough to hold the whole of a small file (hashed for free) and the dimensions of almost any photo.
HEAD_BYTES = 64 * 1024
_TAIL_BYTES = 32
_SAMPLE_BYTES = 4096
_HIGH_DEPTH_MODES = frozenset(("I;16", "I;16L", "I;16B", "I;16N", "I", "F"))
_WHITE = (255, 255, 255, 255)


class ImageLoadError(Exception):
    """A file that cannot be used as an image. ``reason`` (also ``str(error)``) is one sentence;
    ``kind`` is a short code for grouping: unreadable, empty_file, not_image, unsupported_format,
    corrupt, truncated, too_large or unsupported_mode."""

    def __init__(self, reason: str, kind: str = "corrupt"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class ImageInfo:
    """What the header-level check learnt about a usable image file."""

    format: str  # one of SUPPORTED_FORMATS (Pillow's names)
    width: int
    height: int
    size_bytes: int
    # Digest of the whole file when the check read all of it (small files), else of a sample (its
    # first 4 KB and last bytes): files whose samples differ cannot be identical.
    digest: bytes
    digest_is_whole: bool


def sniff_format(first_bytes: bytes) -> str | None:
    """The image format of a file from its first bytes (32 are enough), or None if it is not an image."""
    for magic, name in _MAGIC_NUMBERS:
        if first_bytes.startswith(magic):
            return name
    if first_bytes[:4] == b"RIFF" and first_bytes[8:12] == b"WEBP":
        return "WEBP"
    if first_bytes[4:8] == b"ftyp" and first_bytes[8:12] in _AVIF_BRANDS:
        return "AVIF"
    is_bmp = first_bytes[:2] == b"BM" and len(first_bytes) >= 18
    if is_bmp and struct.unpack_from("<I", first_bytes, 14)[0] in _BMP_HEADER_SIZES:
        return "BMP"
    return None


def digest_bytes(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def file_digest(path: Path | str) -> bytes:
    """A content digest of a whole file, read in chunks (used to confirm duplicates)."""
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1024 * 1024), b""):
            hasher.update(chunk)
    return hasher.digest()


# ---------------------------------------------------------------- the cheap check

def check_image(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Check a file at header level: readable, an image by content, dimensions within ``max_pixels``,
    and not obviously truncated. Raises ImageLoadError with the reason. A file whose end looks wrong
    gets a full decode, so that a valid file with trailing data is not rejected."""
    head, tail, size = _read_ends(path)
    image_format = _format_of(head, Path(path).suffix)
    dimensions = _header_dimensions(image_format, head) or _dimensions_from_pillow(path, image_format)
    check_pixel_limit(*dimensions, max_pixels)
    if _looks_truncated(image_format, head, tail, size):
        load_rgb(path, max_pixels)  # raises with the precise reason if it really is broken
    whole = len(head) == size
    digest = digest_bytes(head if whole else head[:_SAMPLE_BYTES] + tail)
    return ImageInfo(image_format, dimensions[0], dimensions[1], size, digest, whole)


def _format_of(head: bytes, suffix: str = "") -> str:
    if not head:
        raise ImageLoadError(EMPTY_FILE, "empty_file")
    image_format = sniff_format(head)
    if image_format is None and head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS:
        raise ImageLoadError(HEIC_NOT_SUPPORTED, "unsupported_format")
    if image_format is None and (other := _other_image_format(head, suffix)):
        raise ImageLoadError(f"{other} image: this format cannot be read; convert it to PNG or JPEG",
                             "unsupported_format")
    if image_format is None:
        raise ImageLoadError(NOT_AN_IMAGE, "not_image")
    return image_format


def _other_image_format(head: bytes, suffix: str) -> str | None:
    for magic, name in _OTHER_IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    if _NETPBM.match(head):
        return "Netpbm (PBM, PGM or PPM)"
    return _OTHER_IMAGE_SUFFIXES.get(suffix.lower())  # formats without a signature


def _header_dimensions(image_format: str, head: bytes) -> tuple[int, int] | None:
    """Width and height read straight from the header bytes; None for TIFF and unusual layouts."""
    parser = _HEADER_PARSERS.get(image_format)
    return parser(head) if parser else None


def check_pixel_limit(width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"Corrupt image: its header says it is {width} x {height} pixels")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(f"Image too large: {width} x {height} pixels is over the limit of "
                             f"{max_pixels:,} pixels (a protection against decompression bombs); save a smaller "
                             "copy of it", "too_large")


def _read_ends(path: Path | str) -> tuple[bytes, bytes, int]:
    """The first HEAD_BYTES and the last few bytes of a file, and its size, in as few system calls
    as possible: for a small file, one read gives all three."""
    try:
        with open(path, "rb", buffering=0) as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(HEAD_BYTES)
            if size <= len(head):
                return head, head[-_TAIL_BYTES:], len(head)
            file.seek(size - _TAIL_BYTES)
            return head, file.read(_TAIL_BYTES), size
    except OSError as error:
        raise ImageLoadError(_os_error_reason(error), "unreadable") from error


def _os_error_reason(error: OSError) -> str:
    if isinstance(error, PermissionError):
        return "Cannot be read: permission denied"
    if isinstance(error, FileNotFoundError):
        return "Cannot be read: the file no longer exists (or is a broken link)"
    return f"Cannot be read: {error.strerror or error}"


def _jpeg_dimensions(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the frame header (SOFn) and read its size."""
    position, end = 2, len(head)
    while position + 9 <= end:
        if head[position] != 0xFF:
            return None
        marker = head[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack_from(">HH", head, position + 5)
            return width, height
        if marker in (0xDA, 0xD9):  # scan or end before any frame header: leave it to Pillow
            return None
        position += 2 + struct.unpack_from(">H", head, position + 2)[0]
    return None


def _png_dimensions(head: bytes) -> tuple[int, int] | None:
    if head[12:16] != b"IHDR" or len(head) < 24:
        return None
    return struct.unpack_from(">II", head, 16)


def _gif_dimensions(head: bytes) -> tuple[int, int] | None:
    return struct.unpack_from("<HH", head, 6) if len(head) >= 10 else None


def _bmp_dimensions(head: bytes) -> tuple[int, int] | None:
    header_size = struct.unpack_from("<I", head, 14)[0]
    if header_size == 12 and len(head) >= 22:
        return struct.unpack_from("<HH", head, 18)
    if len(head) < 26:
        return None
    width, height = struct.unpack_from("<ii", head, 18)
    return width, abs(height)  # a negative height means rows stored top-down


def _webp_dimensions(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        width = int.from_bytes(head[24:27], "little") + 1
        return width, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", head, 26)
        return width & 0x3FFF, height & 0x3FFF
    return None


_HEADER_PARSERS: dict[str, Callable[[bytes], tuple[int, int] | None]] = {
    "JPEG": _jpeg_dimensions,
    "PNG": _png_dimensions,
    "GIF": _gif_dimensions,
    "BMP": _bmp_dimensions,
    "WEBP": _webp_dimensions,
}


def _dimensions_from_pillow(path: Path | str, image_format: str) -> tuple[int, int]:
    try:
        with Image.open(path, formats=[image_format]) as image:  # reads the header only
            return image.size
    except OSError as error:
        if error.errno is not None:  # a real I/O error rather than a parsing one
            raise ImageLoadError(_os_error_reason(error), "unreadable") from error
        raise _decode_failure(error, image_format) from error
    except Exception as error:  # Pillow plugins raise many kinds of errors on bad headers
        raise _decode_failure(error, image_format) from error


def _looks_truncated(image_format: str, head: bytes, tail: bytes, size: int) -> bool:
    """Cheap end-of-file tests; True only means "decode it to be sure"."""
    if image_format == "JPEG":
        return b"\xff\xd9" not in tail  # End Of Image marker (some writers pad after it)
    if image_format == "PNG":
        return b"IEND" not in tail
    if image_format == "GIF":
        return not tail.rstrip(b"\x00").endswith(b";")  # GIF trailer
    if image_format in ("BMP", "WEBP"):  # both headers declare the file size
        declared = struct.unpack_from("<I", head, 2 if image_format == "BMP" else 4)[0]
        declared += 8 if image_format == "WEBP" else 0
        return size < declared
    return False


# ---------------------------------------------------------------- the full load

def load_rgb(path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS,
             min_side: int | None = None) -> Image.Image:
    """Decode an image file to an upright 8-bit RGB image (EXIF orientation applied, transparency
    composited on white, 16-bit and float data scaled). Raises ImageLoadError with a one-sentence
    reason on any failure.

    ``min_side``: the shorter side the caller needs at least (the preprocessing's resize size). A
    JPEG larger than that by a factor of 2, 4 or 8 is decoded directly at that reduced size (DCT
    scaling, several times faster on phone photos); an image of another format is reduced so right
    after decoding (block averages: far less memory for what follows). The result is the image the
    caller would have got, up to resampling. None decodes at full size."""
    try:
        file = open(path, "rb")
    except OSError as error:
        raise ImageLoadError(_os_error_reason(error), "unreadable") from error
    with file:
        head = _read_head(file)
        image_format = _format_of(head, Path(path).suffix)
        dimensions = _header_dimensions(image_format, head)
        if dimensions:  # refuse a bomb before Pillow even parses it
            check_pixel_limit(*dimensions, max_pixels)
        try:
            return _decode(file, image_format, max_pixels, min_side)
        except ImageLoadError:
            raise
        except Exception as error:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
            raise _decode_failure(error, image_format) from error


def _read_head(file: BinaryIO) -> bytes:
    try:
        head = file.read(HEAD_BYTES)
        file.seek(0)
    except OSError as error:
        raise ImageLoadError(_os_error_reason(error), "unreadable") from error
    return head


def _decode(file: BinaryIO, image_format: str, max_pixels: int | None, min_side: int | None) -> Image.Image:
    # Restricting Pillow to the sniffed format keeps the scan and the loader in agreement.
    with Image.open(file, formats=[image_format]) as image:
        check_pixel_limit(*image.size, max_pixels)
        if min_side and image_format == "JPEG":
            # Pillow picks the largest of the 1/2, 1/4, 1/8 reductions that keeps both sides at least
            # min_side. Asking for a square makes the EXIF rotation applied below irrelevant: the
            # shorter side is the same before and after turning the image.
            image.draft(None, (min_side, min_side))
        image.load()
        if min_side and image_format != "JPEG":
            image = _reduced(image, min_side)  # before the turned copy and the RGB one: each would be whole
        rgb = to_rgb(_upright(image))
    return _reduced(rgb, min_side) if min_side and image_format != "JPEG" else rgb  # a palette image: now


def _reduced(image: Image.Image, min_side: int) -> Image.Image:
    """A large image of a format with no reduced decoding, halved as JPEG's draft would (1/2, 1/4, 1/8, as
    long as the shorter side stays at least ``min_side``), by averaging blocks of pixels. What follows
    (the float tensor, the model's resize) then works on a few megapixels: a 240-megapixel PNG, handed on
    whole, took 5 GB of memory to classify."""
    factor = 1
    while factor < 8 and min(image.size) // (2 * factor) >= min_side:
        factor *= 2
    try:
        return image.reduce(factor) if factor > 1 else image
    except ValueError:  # a mode Pillow does not reduce (a palette): reduced once it is RGB
        return image


def _upright(image: Image.Image) -> Image.Image:
    """A detached copy of the image turned the way the camera's EXIF orientation says."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a broken orientation tag should not cost the user an otherwise good image
        return image.copy()


def _decode_failure(error: Exception, image_format: str) -> ImageLoadError:
    name = "WebP" if image_format == "WEBP" else image_format
    if isinstance(error, Image.DecompressionBombError):
        return ImageLoadError(f"Image too large: over the limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
                              "pixels that the image library enforces (a protection against decompression "
                              "bombs)", "too_large")
    if "truncated" in str(error).lower():
        return ImageLoadError(TRUNCATED, "truncated")
    if isinstance(error, Image.UnidentifiedImageError):
        return ImageLoadError(f"Corrupt image: it starts like a {name} file but its header cannot be read")
    detail = str(error).strip() or type(error).__name__
    return ImageLoadError(f"Corrupt image: the {name} data cannot be decoded ({detail[:80]})")


# ---------------------------------------------------------------- colour modes

def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: alpha and transparency composited on white, 16-bit and 32-bit
    data scaled (not clipped) to 8 bits, palette, CMYK, YCbCr, LAB... converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _HIGH_DEPTH_MODES:
        return _to_8bit_grey(image).convert("RGB")
    if _has_transparency(image):
        return _composite_on_white(image)
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(f"Unsupported colour mode {mode}: it cannot be converted to RGB",
                             "unsupported_mode") from error


def _has_transparency(image: Image.Image) -> bool:
    return "transparency" in image.info or any(band in ("A", "a") for band in image.getbands())


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _WHITE)
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    """Scale one-channel 16-bit, 32-bit integer or float data linearly onto 0..255."""
    low, high = _value_range(image)
    scale = 255.0 / (high - low) if high > low else 0.0
    as_float = image.convert("F")
    # +0.5 so that the float-to-byte conversion, which truncates, rounds to nearest.
    return as_float.point(lambda value: value * scale + (0.5 - low * scale)).convert("L")


def _value_range(image: Image.Image) -> tuple[float, float]:
    """The range the data is meant to span: the container's for 16-bit data, the common conventions
    (0..255, 0..65535, 0..1) when the values fit one, else the image's own minimum and maximum."""
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    low, high = cast("tuple[float, float]", image.getextrema())  # one band: (min, max)
    conventions: tuple[tuple[float, float], ...] = ((0.0, 255.0), (0.0, 65535.0))
    if image.mode == "F":
        conventions = ((0.0, 1.0), *conventions)
    for conventional_low, conventional_high in conventions:
        if conventional_low <= low and high <= conventional_high:
            return conventional_low, conventional_high
    return float(low), float(high)
