import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shelf.ingest.images import ImageError, clean_filename, decode_image
from tests.conftest import image_bytes, skimage_photo, solid


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "HEIF"])
def test_every_supported_format_decodes_to_rgb(fmt):
    data = image_bytes(solid((40, 120, 200), (80, 60)), fmt)
    decoded = decode_image(data, f"shelf.{fmt.lower()}")
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (80, 60)
    r, g, b = decoded.image.getpixel((40, 30))
    assert abs(r - 40) < 12 and abs(g - 120) < 12 and abs(b - 200) < 12  # lossy formats drift a little


def test_gif_uses_first_frame():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(buffer.getvalue(), "anim.gif")
    r, _, b = decoded.image.getpixel((5, 5))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = decode_image(image_bytes(image, "JPEG", exif=exif.tobytes(), quality=95), "phone.jpg")
    assert decoded.image.size == (20, 40)
    assert decoded.image.getpixel((10, 2))[0] > 200  # the left strip is now at the top
    assert decoded.image.getpixel((10, 37))[0] < 50


@pytest.mark.parametrize("eighths", range(1, 9))
def test_a_jpeg_is_drafted_at_any_eighth_upright_and_the_same_photo(eighths):
    """Odd sizes included (Pillow's draft once refused them), EXIF orientation applied as at full size."""
    photo = np.asarray(Image.open(skimage_photo("rocket.jpg")).convert("RGB"))[:401, :599]  # odd both ways
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(Image.fromarray(photo), "JPEG", exif=exif.tobytes(), quality=95)
    full = decode_image(data, "r.jpg")
    drafted = decode_image(data, "r.jpg", draft_eighths=lambda width, height: eighths)
    assert (drafted.width, drafted.height) == full.image.size == (401, 599)  # the photo's own size, upright
    eighths = 8 if eighths == 7 else eighths  # slower than a full decode: not done
    assert drafted.image.size == (-(-401 * eighths // 8), -(-599 * eighths // 8))
    assert drafted.full_size == (None if eighths == 8 else (401, 599)) and drafted.scale == eighths / 8
    expected = np.asarray(full.image.resize(drafted.image.size, Image.BILINEAR), dtype=int)
    assert np.abs(np.asarray(drafted.image, dtype=int) - expected).mean() < 6  # the same photo, turned alike


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_are_drafted_too(mode):
    image = Image.open(skimage_photo("rocket.jpg")).convert(mode)  # 640 × 427
    decoded = decode_image(image_bytes(image, "JPEG", quality=95), "r.jpg", draft_eighths=lambda w, h: 3)
    assert decoded.image.mode == "RGB" and decoded.full_size == image.size
    # simplejpeg decodes greyscale at 3/8; a CMYK JPEG is left to Pillow, at the power of two above (1/2)
    assert decoded.image.size == ((240, 161) if mode == "L" else (320, 214))


def test_transparency_is_composited_on_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    decoded = decode_image(image_bytes(image, "PNG"), "cutout.png")
    assert decoded.image.getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_transparency_and_other_modes():
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.info["transparency"] = 0
    assert decode_image(image_bytes(palette, "PNG", transparency=0), "p.png").image.getpixel((1, 1)) == \
        (255, 255, 255)
    for mode, color in [("L", 128), ("1", 1), ("LA", (90, 255)), ("CMYK", (0, 255, 255, 0))]:
        fmt = "JPEG" if mode == "CMYK" else "PNG" if mode != "1" else "BMP"
        decoded = decode_image(image_bytes(Image.new(mode, (8, 8), color), fmt), f"{mode}.img")
        assert decoded.image.mode == "RGB", mode


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    array = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey in 16 bits
    data = image_bytes(Image.fromarray(array), "PNG")
    value = decode_image(data, "scan16.png").image.getpixel((4, 4))[0]
    assert 120 <= value <= 135  # clipping would give 255


@pytest.mark.parametrize("data,expected", [
    (b"", "empty"),
    (b"hello, this is a text file", "not an image"),
    (bytes(range(256)) * 40, "not an image"),
])
def test_non_images_are_refused_with_the_file_named(data, expected):
    with pytest.raises(ImageError) as info:
        decode_image(data, "photo.jpg")
    assert str(info.value).startswith("photo.jpg: ")
    assert expected in str(info.value)


def test_truncated_jpeg_is_reported():
    data = skimage_photo("rocket.jpg").read_bytes()
    with pytest.raises(ImageError, match=r"rocket\.jpg: .*(truncated|corrupt)"):
        decode_image(data[: len(data) // 2], "rocket.jpg")


def test_corrupt_png_is_reported():
    data = bytearray(image_bytes(solid(size=(64, 64)), "PNG"))
    data[60:80] = b"\x00" * 20  # damage the image data
    with pytest.raises(ImageError, match="corrupt|truncated"):
        decode_image(bytes(data), "damaged.png")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims enormous dimensions: the classic decompression bomb shape."""
    data = bytearray(image_bytes(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(_png_claiming(100_000, 100_000), "bomb.png")


def test_pixel_and_byte_limits():
    data = image_bytes(solid(size=(200, 200)), "PNG")
    with pytest.raises(ImageError, match="megapixels"):
        decode_image(data, "big.png", max_pixels=10_000)
    with pytest.raises(ImageError, match="MB"):
        decode_image(data, "big.png", max_bytes=100)


def test_content_hash_identifies_the_photo_not_the_name():
    data = image_bytes(solid(), "PNG")
    assert decode_image(data, "a.png").sha256 == decode_image(data, "b.png").sha256
    assert decode_image(data, "a.png").sha256 != decode_image(image_bytes(solid((1, 2, 3)), "PNG"), "a.png").sha256


@pytest.mark.parametrize("raw,clean", [
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\me\\shelf.jpg", "shelf.jpg"),
    ("<b>x</b>.jpg", "<b>x</b>.jpg"),  # a tag is no directory: shown as typed (and escaped wherever it is shown)
    ("shots/<b>x</b>.jpg", "<b>x</b>.jpg"),
    ("<\\", "unnamed"),  # a backslash outside a tag is a directory separator, after a lone '<' too
    ("a<b/c.jpg", "c.jpg"),
    ("evil\x00name\r\n.jpg", "evilname.jpg"),
    ("", "unnamed"),
    (None, "unnamed"),
])
def test_file_names_are_cleaned_for_display(raw, clean):
    assert clean_filename(raw) == clean


def test_long_names_are_bounded():
    assert len(clean_filename("x" * 1000 + ".jpg")) <= 120
