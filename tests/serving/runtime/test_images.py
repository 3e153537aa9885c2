import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from serving.runtime.errors import InvalidInputError
from serving.runtime.images import decode_image, encode_image, image_bytes, read_image
from tests.conftest import encode, photo, png


def test_raw_png_and_base64_decode_to_the_same_pixels():
    raw = png(32)
    a = decode_image("image", raw, 10_000)
    b = decode_image("image", base64.b64encode(raw), 10_000)
    c = decode_image("image", b"data:image/png;base64," + base64.b64encode(raw), 10_000)
    assert a.size == (32, 32)
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_jpeg_accepted():
    img = decode_image("image", encode(photo(40), "JPEG"), 10_000)
    assert img.size == (40, 40) and img.mode == "RGB"


def test_base64_garbage_names_the_field():
    with pytest.raises(InvalidInputError, match=r"input 'image': not a PNG/JPEG/WebP image and not valid base64"):
        image_bytes("image", b"%%% not base64 %%%")


def test_base64_of_non_image():
    with pytest.raises(InvalidInputError, match=r"input 'mask_image': base64 decoded to 11 bytes that are not"):
        image_bytes("mask_image", base64.b64encode(b"hello world"))


def test_truncated_png_is_undecodable():
    with pytest.raises(InvalidInputError, match=r"input 'image': cannot decode image"):
        decode_image("image", png(32)[:60], 10_000)


def test_pixel_limit_message_names_size_and_limit():
    with pytest.raises(InvalidInputError, match=r"input 'image': 64x64 = 4096 pixels exceeds the limit of 1000 pixels"):
        decode_image("image", png(64), 1000)


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header claiming width x height with a tiny (invalid) body: only a header read is safe."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_from_header():
    with pytest.raises(InvalidInputError, match=r"5000x5000 = 25000000 pixels exceeds the limit of 1048576"):
        decode_image("image", bomb_png(5000, 5000), 1024 * 1024)
    # Far past PIL's own bound, PIL refuses while reading the header: same outcome, our limit named.
    with pytest.raises(InvalidInputError, match=r"decompression bomb .* the limit is 1048576 pixels"):
        decode_image("image", bomb_png(100_000, 100_000), 1024 * 1024)


def test_empty_input():
    with pytest.raises(InvalidInputError, match=r"input 'image': empty"):
        image_bytes("image", b"")


def test_encode_png_roundtrip_and_jpeg():
    img = photo(16)
    assert Image.open(io.BytesIO(encode_image(img, "png"))).tobytes() == img.tobytes()
    assert encode_image(img, "jpeg")[:3] == b"\xff\xd8\xff"
    with pytest.raises(InvalidInputError, match="output_format"):
        encode_image(img, "gif")


def test_read_image_takes_text_cells_and_refuses_a_short_side():
    img = read_image("mask_image", base64.b64encode(png(16)).decode(), 10_000, 16, mode="L")
    assert img.size == (16, 16) and img.mode == "L"
    with pytest.raises(InvalidInputError, match=r"input 'image': 16x16 is smaller than the minimum side of 17 pixels"):
        read_image("image", png(16), 10_000, 17)
