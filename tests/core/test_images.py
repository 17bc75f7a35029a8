"""Image files: recognised by content, checked cheaply, and always loaded as upright 8-bit RGB."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from tests.helpers import make_image
from tests.unprivileged import reachable_folder, run_without_privileges
from tl_studio.core import images
from tl_studio.core.images import ImageLoadError, check_image, load_rgb, sniff_format, to_rgb


def save(image: Image.Image, path: Path, fmt: str, **options) -> Path:
    skip_without_avif(fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **options)
    return path


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    skip_without_avif(fmt)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def skip_without_avif(fmt: str) -> None:
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow was built without AVIF support")


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A PNG whose header (with a valid checksum) claims a size its data does not have."""
    data = bytearray(encoded(Image.new("RGB", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


# ---------------------------------------------------------------- recognising formats

@pytest.mark.parametrize("fmt, expected", [("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("BMP", "BMP"),
                                           ("TIFF", "TIFF"), ("WEBP", "WEBP"), ("AVIF", "AVIF")])
def test_formats_are_recognised_by_their_first_bytes(fmt, expected):
    assert sniff_format(encoded(Image.new("RGB", (4, 4), "red"), fmt)[:32]) == expected


@pytest.mark.parametrize("content", [b"", b"hello world, not an image", b"BM is also how this text starts",
                                     b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"%PDF-1.7"])
def test_other_content_is_not_an_image(content):
    assert sniff_format(content) is None


def test_an_iphone_heic_photo_is_named_as_such(tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100)
    with pytest.raises(ImageLoadError) as error:
        check_image(path)
    assert error.value.kind == "unsupported_format" and "HEIC" in error.value.reason


def test_a_png_named_jpg_is_accepted(tmp_path):
    path = save(Image.new("RGB", (10, 6), (0, 128, 255)), tmp_path / "photo.jpg", "PNG")
    assert check_image(path).format == "PNG"
    assert load_rgb(path).getpixel((0, 0)) == (0, 128, 255)


def test_a_text_file_named_png_is_rejected(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("shopping list: milk, eggs")
    for check in (check_image, load_rgb):
        with pytest.raises(ImageLoadError) as error:
            check(path)
        assert error.value.kind == "not_image" and "Not an image" in str(error.value)


# ---------------------------------------------------------------- the header-level check

@pytest.mark.parametrize("fmt, options", [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}),
                                          ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {"lossless": True}),
                                          ("WEBP", {"quality": 80}), ("AVIF", {})])
def test_the_check_reads_dimensions_from_the_header(tmp_path, fmt, options):
    path = save(Image.new("RGB", (37, 21), "green"), tmp_path / f"image.{fmt.lower()}", fmt, **options)
    info = check_image(path)
    assert (info.format, info.width, info.height) == (fmt, 37, 21)
    assert info.size_bytes == path.stat().st_size


def test_the_check_finds_the_size_of_a_jpeg_after_exif_and_big_metadata(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "x" * 30_000  # a long image description before the frame header
    path = save(Image.new("RGB", (300, 200)), tmp_path / "camera.jpg", "JPEG", exif=exif,
                icc_profile=b"\0" * 50_000)
    info = check_image(path)
    assert (info.width, info.height) == (300, 200)


def test_an_empty_file_is_reported(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageLoadError) as error:
        check_image(path)
    assert error.value.kind == "empty_file" and "0 bytes" in error.value.reason


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_a_truncated_image_is_reported_by_the_cheap_check(tmp_path, fmt):
    source = make_image(tmp_path / "source.png", (200, 40, 40), size=64)
    data = encoded(Image.open(source), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageLoadError) as error:
        check_image(path)
    assert error.value.kind in ("truncated", "corrupt")


def test_a_jpeg_with_data_after_its_end_marker_is_fine(tmp_path):
    path = make_image(tmp_path / "with_trailer.jpg", (40, 60, 200))
    path.write_bytes(path.read_bytes() + b"\0" * 5000 + b"appended by some camera")
    assert check_image(path).format == "JPEG"


def test_a_decompression_bomb_is_rejected_from_its_header(tmp_path):
    path = png_claiming_size(tmp_path / "bomb.png", 50_000, 50_000)
    for check in (check_image, load_rgb):
        with pytest.raises(ImageLoadError) as error:
            check(path)
        assert error.value.kind == "too_large" and "50000 x 50000" in error.value.reason


def test_the_pixel_limit_is_configurable(tmp_path):
    path = save(Image.new("RGB", (200, 100)), tmp_path / "big.png", "PNG")
    assert check_image(path, max_pixels=20_000).width == 200
    with pytest.raises(ImageLoadError, match="over the limit of 19,999 pixels"):
        check_image(path, max_pixels=19_999)
    with pytest.raises(ImageLoadError):
        load_rgb(path, max_pixels=19_999)


def test_an_unreadable_file_is_reported(tmp_path, monkeypatch):
    path = make_image(tmp_path / "locked.jpg", (1, 2, 3))

    def no_permission(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(images, "open", no_permission, raising=False)  # root can read anything
    for check in (check_image, load_rgb):
        with pytest.raises(ImageLoadError) as error:
            check(path)
        assert error.value.kind == "unreadable" and "permission denied" in error.value.reason


def test_a_file_without_read_permission_is_reported():
    with reachable_folder() as folder:
        path = make_image(folder / "locked.jpg", (1, 2, 3))
        path.chmod(0)

        def check():
            with pytest.raises(ImageLoadError, match="permission denied"):
                check_image(path)

        run_without_privileges(check)


# ---------------------------------------------------------------- loading as RGB

def test_load_rgb_decodes_and_reports_corrupt_data_the_header_check_cannot_see(tmp_path):
    data = bytearray(encoded(Image.effect_noise((64, 64), 60).convert("RGB"), "PNG"))
    start = data.index(b"IDAT") + 10
    data[start:start + 30] = bytes(byte ^ 0x55 for byte in data[start:start + 30])
    path = tmp_path / "damaged.png"
    path.write_bytes(bytes(data))
    check_image(path)  # header, size and end marker are all fine
    with pytest.raises(ImageLoadError) as error:
        load_rgb(path)
    assert error.value.kind == "corrupt" and error.value.reason.startswith("Corrupt image")


@pytest.mark.parametrize("mode, colour", [("1", 1), ("L", 90), ("P", 3), ("RGB", (1, 2, 3)), ("YCbCr", (90, 60, 200)),
                                          ("CMYK", (10, 200, 30, 0)), ("LAB", (50, 10, 20)), ("HSV", (20, 200, 100))])
def test_every_colour_mode_becomes_rgb(mode, colour):
    image = to_rgb(Image.new(mode, (5, 4), colour))
    assert image.mode == "RGB" and image.size == (5, 4)


def test_a_cmyk_jpeg_loads_as_rgb_with_its_colours(tmp_path):
    path = save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "print.jpg", "JPEG", quality=100)
    assert Image.open(path).mode == "CMYK"
    red, green, blue = load_rgb(path).getpixel((8, 8))
    assert red > 240 and green < 15 and blue < 15


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    loaded = load_rgb(save(rgba, tmp_path / "logo.png", "PNG"))
    assert loaded.getpixel((0, 0)) == (255, 0, 0)
    assert loaded.getpixel((1, 1)) == (255, 255, 255)


def test_grey_with_alpha_is_composited_on_white(tmp_path):
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((0, 0), (0, 255))
    loaded = load_rgb(save(la, tmp_path / "mask.png", "PNG"))
    assert loaded.getpixel((0, 0)) == (0, 0, 0) and loaded.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_a_palette_image_with_a_transparent_colour_is_composited_on_white(tmp_path, fmt):
    palette_image = Image.new("P", (4, 4), 1)
    palette_image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette_image.putpixel((0, 0), 0)
    path = save(palette_image, tmp_path / f"icon.{fmt.lower()}", fmt, transparency=0)
    loaded = load_rgb(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255)  # the transparent index, not black
    assert loaded.getpixel((2, 2)) == (0, 0, 255)


def test_16_bit_greyscale_is_scaled_to_8_bit_not_clipped(tmp_path):
    deep = Image.new("I;16", (3, 1))
    for x, value in enumerate((65535, 32768, 1000)):
        deep.putpixel((x, 0), value)
    path = save(deep, tmp_path / "scan.png", "PNG")
    assert Image.open(path).mode in ("I;16", "I")
    loaded = load_rgb(path)
    assert [loaded.getpixel((x, 0)) for x in range(3)] == [(255,) * 3, (128,) * 3, (4,) * 3]


def test_32_bit_integer_and_float_images_are_scaled(tmp_path):
    integers = Image.new("I", (2, 1))
    integers.putpixel((0, 0), 40_000)  # 16-bit data in a 32-bit container
    floats = Image.new("F", (2, 1))
    floats.putpixel((0, 0), 1.0)  # 0..1 data
    floats.putpixel((1, 0), 0.5)
    # 40000 / 65535 * 255 = 155.6: scaled and rounded, not clipped to 255
    assert load_rgb(save(integers, tmp_path / "int.tif", "TIFF")).getpixel((0, 0)) == (156, 156, 156)
    loaded = load_rgb(save(floats, tmp_path / "float.tif", "TIFF"))
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    path = save(Image.new("RGB", (40, 20), "blue"), tmp_path / "portrait.jpg", "JPEG", exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_rgb(path).size == (20, 40)


def _descriptors_open_on(path: Path) -> list[str]:
    folder = Path("/proc/self/fd")
    targets = []
    for fd in os.listdir(folder):
        try:
            targets.append(os.readlink(folder / fd))
        except OSError:
            continue  # the descriptor listdir itself used, closed since
    return [target for target in targets if target == str(path)]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files (Linux)")
def test_the_loaded_image_does_not_keep_the_file_open(tmp_path):
    """An open handle would stop a Windows user from moving or deleting the image while the app runs
    (Linux deletes open files happily, so the test looks at the process's open descriptors)."""
    path = make_image(tmp_path / "a.jpg", (10, 20, 30)).resolve()
    opaque = make_image(tmp_path / "b.png", (10, 20, 30))  # PNG: a lazily decoded format too
    images = [load_rgb(path), load_rgb(opaque)]
    assert _descriptors_open_on(path) == [] and _descriptors_open_on(opaque.resolve()) == []
    path.unlink()
    opaque.unlink()
    # The pixels are in memory: reading them all needs no file.
    assert all(image.mode == "RGB" and len(image.tobytes()) == 64 * 64 * 3 for image in images)


def _phone_photo(path: Path, orientation: int | None) -> Path:
    """A landscape JPEG as a phone stores it (sensor orientation plus an EXIF tag to turn it)."""
    x = np.linspace(0, 255, 2400, dtype=np.float32)
    y = np.linspace(0, 255, 1800, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    pixels[100:400, 200:900] = (250, 20, 20)  # a marker in the sensor's top-left corner
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, quality=90, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [None, 6, 8, 3])
def test_a_large_jpeg_decodes_reduced_to_the_needed_side_and_upright(tmp_path, orientation):
    path = _phone_photo(tmp_path / "phone.jpg", orientation)
    full = load_rgb(path)
    reduced = load_rgb(path, min_side=256)
    # 1800 // 256 = 7: the 1/4 reduction is the largest that keeps both sides >= 256.
    assert sorted(reduced.size) == [450, 600] and min(reduced.size) >= 256
    assert (reduced.width > reduced.height) == (full.width > full.height)  # EXIF rotation applied
    # The same picture up to resampling: compared at the reduced size, pixel by pixel.
    difference = np.abs(np.asarray(full.resize(reduced.size, Image.Resampling.BOX), dtype=np.int16)
                        - np.asarray(reduced, dtype=np.int16))
    assert difference.mean() < 3


def test_a_jpeg_decodes_in_full_when_a_reduction_would_go_below_the_needed_side(tmp_path):
    path = _phone_photo(tmp_path / "phone.jpg", 6)
    assert load_rgb(path, min_side=1000).size == (1800, 2400)  # 1800 // 1000 = 1: no reduction
    assert load_rgb(path, min_side=800).size == (900, 1200)  # 1800 // 800 = 2



@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "I;16"])
def test_a_large_image_of_another_format_is_reduced_after_decoding_as_a_jpeg_would_be(tmp_path, mode):
    """A 240-megapixel PNG went on whole to the float tensor and the model's resize: 5 GB of memory to
    classify one image. It is reduced as a JPEG's draft would be, after decoding (block averages)."""
    x = np.linspace(0, 255, 2400, dtype=np.float32)
    y = np.linspace(0, 255, 1800, dtype=np.float32)[:, None]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels)
    image = {"RGB": image, "RGBA": image.convert("RGBA"), "P": image.quantize(64),
             "I;16": Image.fromarray((y + 0 * x).astype(np.uint16) * 256)}[mode]
    path = tmp_path / f"big-{mode.replace(';', '')}.png"
    image.save(path)
    full = load_rgb(path)
    reduced = load_rgb(path, min_side=256)
    assert reduced.size == (600, 450) and reduced.mode == "RGB"  # 1/4, as the JPEG above
    difference = np.abs(np.asarray(full.resize(reduced.size, Image.Resampling.BOX), dtype=np.int16)
                        - np.asarray(reduced, dtype=np.int16))
    assert difference.mean() < 3
    assert load_rgb(path, min_side=1000).size == (2400, 1800)  # no halving keeps 1000 px


def test_the_export_check_gets_phone_photos_reduced_but_upright_and_their_own_shape(tmp_path):
    from tl_studio.core.samples import load_check_images

    path = _phone_photo(tmp_path / "phone.jpg", 6)
    (image,) = load_check_images([path, tmp_path / "missing.jpg"])
    assert tuple(image.shape) == (1, 3, 1200, 900)  # 1800 // 512 = 3: the 1/2 reduction, turned upright


def test_a_200_megapixel_phone_photo_is_read(tmp_path):
    """The largest phone photos (16320 x 12240) were over the old limit (Pillow's 89.5 million pixels) and
    over Pillow's own bomb check (twice that): the loaders decode them at 1/8 of that size."""
    path = tmp_path / "phone.jpg"
    Image.new("L", (16320, 12240), 128).save(path, quality=50)
    assert (check_image(path).width, check_image(path).height) == (16320, 12240)
    assert load_rgb(path, min_side=256).size == (2040, 1530)


@pytest.mark.parametrize("suffix, named", [(".ppm", "Netpbm"), (".jp2", "JPEG 2000"), (".ico", "Windows icon"),
                                           (".tga", "TGA"), (".qoi", "QOI")])
def test_an_image_of_a_format_the_app_does_not_read_is_named_with_the_way_out(tmp_path, suffix, named):
    path = save(Image.new("RGB", (32, 32), (200, 10, 10)), tmp_path / f"photo{suffix}", None)
    for check in (check_image, load_rgb):
        with pytest.raises(ImageLoadError) as error:
            check(path)
        assert error.value.kind == "unsupported_format"
        assert error.value.reason.startswith(named)
        assert error.value.reason.endswith(" image: this format cannot be read; convert it to PNG or JPEG")


def test_a_text_file_that_starts_like_a_netpbm_header_is_not_an_image(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("P1 is the first priority")
    with pytest.raises(ImageLoadError) as error:
        check_image(path)
    assert error.value.kind == "not_image"
