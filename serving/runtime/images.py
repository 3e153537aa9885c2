"""Decode request images safely and encode generated ones.

Images arrive as encoded PNG/JPEG/WebP bytes or as base64 text of those bytes (the AWS
sample's clients send base64). Sizes are bounded from the header, before pixels are decoded,
so a decompression bomb costs a few hundred bytes of reading, not gigabytes of memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

from PIL import Image

from serving.runtime.errors import InvalidInputError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_ENCODED_BYTES = 32 * 1024 * 1024
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")
OUTPUT_FORMATS = ("png", "jpeg")


def _looks_like_image(data: bytes) -> bool:
    return any(data.startswith(m) for m in _MAGIC)


def _describe(data: bytes) -> str:
    head = data[:12]
    return repr(head) + ("..." if len(data) > 12 else "")


def image_bytes(field: str, raw: bytes) -> bytes:
    """Return the encoded image bytes, base64-decoding `raw` when it is not raw image bytes."""
    if len(raw) == 0:
        raise InvalidInputError(f"input '{field}': empty; expected PNG/JPEG bytes or their base64 text")
    if len(raw) > MAX_ENCODED_BYTES:
        raise InvalidInputError(
            f"input '{field}': {len(raw)} bytes exceeds the limit of {MAX_ENCODED_BYTES} bytes"
        )
    if _looks_like_image(raw):
        return raw
    text = raw.strip()
    if text.startswith(b"data:") and b"," in text:
        text = text.split(b",", 1)[1]
    try:
        decoded = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            f"input '{field}': not a PNG/JPEG/WebP image and not valid base64 (starts {_describe(raw)})"
        ) from None
    if not _looks_like_image(decoded):
        raise InvalidInputError(
            f"input '{field}': base64 decoded to {len(decoded)} bytes that are not a PNG/JPEG/WebP "
            f"image (starts {_describe(decoded)})"
        )
    return decoded


def decode_image(field: str, raw: bytes, max_pixels: int, mode: str = "RGB") -> Image.Image:
    """Decode one request image into a PIL image of `mode`, refusing anything over `max_pixels`."""
    data = image_bytes(field, raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS))
            width, height = img.size  # header only: nothing decoded yet
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"input '{field}': {width}x{height} = {width * height} pixels exceeds the limit "
                    f"of {max_pixels} pixels"
                )
            img.load()
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInputError(
            f"input '{field}': refused as a decompression bomb ({exc}); the limit is {max_pixels} pixels"
        ) from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise InvalidInputError(
            f"input '{field}': cannot decode image ({type(exc).__name__}: {exc})"
        ) from None
    out = img.convert(mode)
    # what the client sent, before the conversion every runtime wants: the data-quality view counts it
    out.info["source_mode"], out.info["source_format"] = img.mode, img.format
    return out


def read_image(field: str, cell: Any, max_pixels: int, min_side: int, mode: str = "RGB") -> Image.Image:
    """A request cell (bytes, or text of them) decoded as in `decode_image`, refusing images whose
    shorter side is under `min_side` pixels: the one image check every runtime makes."""
    raw = bytes(cell) if isinstance(cell, (bytes, bytearray)) else str(cell).encode()
    img = decode_image(field, raw, max_pixels, mode)
    if min(img.size) < min_side:
        raise InvalidInputError(
            f"input '{field}': {img.width}x{img.height} is smaller than the minimum side of {min_side} pixels"
        )
    return img


def encode_image(img: Image.Image, output_format: str = "png") -> bytes:
    """Encode a generated image; PNG is lossless and byte-identical for identical pixels."""
    if output_format not in OUTPUT_FORMATS:
        raise InvalidInputError(f"gen_args.output_format: {output_format!r} is not one of {OUTPUT_FORMATS}")
    buf = io.BytesIO()
    if output_format == "png":
        img.save(buf, format="PNG")
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()
