"""Decode the ``image_url`` field into a PIL image, within size limits, and cache encodings.

``image_url`` is a ``data:image/png;base64,...`` or ``data:image/jpeg;base64,...`` URL, or
bare base64 with no prefix (Magnitude sends PNG screenshots that way). http(s) URLs are
rejected: the server fetches nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from moondream_iac.server.api_error import ApiError

ALLOWED_FORMATS = ("PNG", "JPEG")
DATA_URL_MEDIA_TYPES = ("image/png", "image/jpeg", "image/jpg")
# Scans (SOS markers, FF DA) in one JPEG. Encoders write 1 for a baseline image and about
# 10 for a progressive one. libjpeg decodes each progressive scan over the whole image, so
# a small file that repeats a scan thousands of times takes seconds of CPU to decode.
MAX_JPEG_SCANS = 64
JPEG_START = b"\xff\xd8"
SOS_MARKER = b"\xff\xda"


@dataclass(frozen=True)
class ImageBytes:
    """The decoded bytes of ``image_url`` and their sha256, the image cache key."""

    data: bytes
    sha256: str


def image_bytes_from_url(image_url: str) -> ImageBytes:
    """Decode a data URL or bare base64 string into bytes. Raises ApiError 400."""
    payload = image_url
    if image_url.startswith("data:"):
        payload = _data_url_payload(image_url)
    elif image_url.startswith(("http://", "https://")):
        raise ApiError(
            400,
            "invalid image_url: http and https URLs are not fetched; send the image as a "
            "data:image/png;base64 URL or as bare base64",
        )

    data = _decode_base64(payload)
    if not data:
        raise ApiError(400, "invalid image_url: the image is empty")
    return ImageBytes(data=data, sha256=hashlib.sha256(data).hexdigest())


def _decode_base64(payload: str) -> bytes:
    """Decode standard base64; on failure, retry with line breaks, URL-safe letters and padding fixed."""
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        pass

    normalised = "".join(payload.split()).replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        return base64.b64decode(normalised, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "invalid image_url: not valid base64 (expected the characters A-Z a-z 0-9 + / and = padding)"
        ) from None


def _data_url_payload(image_url: str) -> str:
    header, separator, payload = image_url.partition(",")
    if not separator:
        raise ApiError(400, "invalid image_url: the data URL has no comma before the data")

    media_type, *parameters = header[len("data:"):].split(";")
    if "base64" not in parameters:
        raise ApiError(400, "invalid image_url: the data URL is not base64-encoded (expected ;base64,)")
    if media_type.lower() not in DATA_URL_MEDIA_TYPES:
        raise ApiError(
            400,
            f"invalid image_url: unsupported media type {media_type[:40]!r}; send image/png or image/jpeg",
        )
    return payload


def decode_image(image: ImageBytes, max_pixels: int) -> Any:
    """Decode PNG or JPEG bytes into an RGB PIL image. Raises ApiError 400 or 413.

    The pixel count and the JPEG scan count are checked before the pixels are decoded,
    so a small file that declares a huge image, or repeats a scan thousands of times,
    costs neither memory nor CPU time.
    """
    from PIL import Image

    if image.data.startswith(JPEG_START):
        check_jpeg_scans(image.data, MAX_JPEG_SCANS)

    opened = _open_image(image.data)
    width, height = opened.size
    if width * height > max_pixels:
        raise ApiError(
            413,
            f"invalid image_url: the image is {width}x{height} = {width * height} pixels, "
            f"above the limit of {max_pixels}; send a smaller image",
        )

    try:
        opened.load()
        if opened.mode != "RGB":
            return opened.convert("RGB")
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on corrupt data
        raise ApiError(
            400, f"invalid image_url: the {opened.format} image cannot be decoded ({_describe(error)})"
        ) from None
    return opened


def _open_image(data: bytes) -> Any:
    """Open PNG or JPEG bytes and read the header only. Raises ApiError 400 or 413."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise ApiError(400, "invalid image_url: the data is not a PNG or JPEG image") from None
    except Image.DecompressionBombError:
        raise ApiError(413, "invalid image_url: the image has too many pixels") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt header raises OSError, SyntaxError and others
        raise ApiError(
            400, f"invalid image_url: the image header cannot be read ({_describe(error)})"
        ) from None


def _describe(error: Exception) -> str:
    text = str(error)[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_jpeg_scans(data: bytes, max_scans: int) -> None:
    """Raise ApiError 400 when the JPEG ``data`` has more than ``max_scans`` scans."""
    if data.count(SOS_MARKER) <= max_scans:
        return
    # FF DA may also occur inside metadata such as an EXIF thumbnail, so count exactly.
    scans = count_jpeg_scans(data, stop_after=max_scans + 1)
    if scans > max_scans:
        raise ApiError(
            400,
            f"invalid image_url: the JPEG image has more than {max_scans} scans (SOS markers); "
            "progressive encoders write about 10, so re-encode the image",
        )


def count_jpeg_scans(data: bytes, *, stop_after: int) -> int:
    """Count the scans of a JPEG as a decoder meets them, stopping at ``stop_after``.

    The walk skips marker segments by their length and entropy-coded data up to the
    next marker, as libjpeg does. It stops at EOI or at data it cannot follow.
    """
    scans = 0
    position = len(JPEG_START)
    while scans < stop_after and position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
            continue
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xDA:
            scans += 1
            position = _skip_entropy_data(data, position)
    return scans


def _skip_entropy_data(data: bytes, position: int) -> int:
    """Return the offset of the first marker at or after ``position`` in entropy-coded data."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following == 0xFF:
            position += 1
        elif following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
        else:
            return position


class ImageCache:
    """An LRU cache of ``model.encode_image`` results, keyed by the sha256 of the image bytes.

    Thread-safe: the event loop reads it and the model worker thread fills it.
    """

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            encoded = self._entries.get(key)
            if encoded is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return encoded

    def put(self, key: str, encoded: Any) -> None:
        with self._lock:
            self._entries[key] = encoded
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
