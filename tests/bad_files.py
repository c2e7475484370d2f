"""The files of the table in docs/faults.md, "What happens with bad input, faults and hostile files", built as
real bytes, each with what the pipeline promises to do with it.

tests/test_bad_input.py checks each case on the function that handles it; tests/test_bad_folder.py
puts all of them among good images in one folder and runs the real `dvc repro` and `imgclf predict`
on it, the way a user meets them.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, features


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def jpeg(colour: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (40, 30), **options: object) -> bytes:
    noise = np.random.default_rng(0).integers(0, 40, (size[1], size[0], 3), dtype=np.uint8)
    return encoded(Image.fromarray(noise + np.asarray(colour, dtype=np.uint8)), "JPEG", quality=90, **options)


def truncated_jpeg() -> bytes:
    return jpeg()[:-200]


def jpeg_with_junk_before_its_end_marker() -> bytes:
    clean = jpeg()
    return clean[:-2] + bytes(range(1, 120)) + clean[-2:]


def exif_only_jpeg() -> bytes:
    """A JPEG with an Exif segment and no JFIF marker, as many cameras write them."""
    data = jpeg(exif=Image.Exif().tobytes())
    assert data[2:4] == b"\xff\xe0"  # Pillow wrote a JFIF APP0 segment: cut it out
    app0_length = struct.unpack(">H", data[4:6])[0]
    return data[:2] + data[4 + app0_length:]


def png_claiming_400_megapixels() -> bytes:
    """A tiny PNG whose header says 20,000 x 20,000 pixels: twice Pillow's own decompression-bomb limit."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)  # width, height, 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
            + chunk(b"IEND", b""))


def cmyk_jpeg() -> bytes:
    return encoded(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG")


def png_16_bit() -> bytes:
    return encoded(Image.fromarray(np.full((20, 20), 32896, dtype=np.uint16)), "PNG")  # mid-grey


def rgba_png() -> bytes:
    return encoded(Image.new("RGBA", (20, 20), (255, 0, 0, 0)), "PNG")  # fully transparent red


def palette_png_with_transparency() -> bytes:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    return encoded(image, "PNG", transparency=0)


def exif_rotated_jpeg() -> bytes:
    """40x20, its left half white, with EXIF orientation 6: upright, the white half is on top."""
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(wide, "JPEG", exif=exif, quality=100)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def webp() -> bytes:
    return encoded(Image.new("RGB", (20, 20), (0, 200, 0)), "WEBP", lossless=True)


@dataclass(frozen=True)
class BadFile:
    """A file for a class folder, and what becomes of it.

    ``stage`` is where it is listed: ``download`` (not an image: skipped_download.csv), ``resize``
    (skipped_resize.csv, with ``action`` skipped, repaired or warning) or None (used as it is, in no
    report). ``reason`` is a piece of the reason the report gives.
    """

    name: str
    content: bytes
    stage: str | None = None
    action: str = "used"
    reason: str = ""

    @property
    def usable(self) -> bool:
        """Whether the file ends up in a resized split (and gets a prediction)."""
        return self.action in ("used", "repaired", "warning")


def bad_files() -> list[BadFile]:
    """One file per row of docs/faults.md's table that concerns a file in a user's folder."""
    files = [
        BadFile("empty.jpg", b"", "download", "skipped", "not an image"),
        BadFile("notes.txt", b"just some text", "download", "skipped", "not an image"),
        BadFile("Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "download", "skipped", "not an image"),
        BadFile(".DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(100), "download", "skipped", "not an image"),
        BadFile("cut.jpg", truncated_jpeg(), "resize", "skipped", "image file is truncated"),
        BadFile("junk.jpg", jpeg_with_junk_before_its_end_marker(), "resize", "warning",
                "extraneous bytes before marker 0xd9"),
        BadFile("exif_only.jpg", exif_only_jpeg()),
        BadFile("png_named.jpg", encoded(Image.new("RGB", (20, 20), (0, 0, 255)), "PNG")),
        BadFile("bmp_named.jpg", encoded(Image.new("RGB", (20, 20), (0, 0, 255)), "BMP")),
        BadFile("no_extension", jpeg()),
        BadFile("print.jpg", cmyk_jpeg(), "resize", "repaired", "CMYK converted to RGB"),
        BadFile("deep.png", png_16_bit(), "resize", "repaired", "I;16 pixels scaled to 8 bits"),
        BadFile("rgba.png", rgba_png(), "resize", "repaired", "transparency composited on white"),
        BadFile("palette.png", palette_png_with_transparency(), "resize", "repaired",
                "transparency composited on white"),
        BadFile("grey.png", encoded(Image.new("L", (20, 20), 90), "PNG")),
        BadFile("rotated.jpg", exif_rotated_jpeg()),
        BadFile("animated.gif", animated_gif(), "resize", "repaired", "animated (3 frames): the first frame is used"),
        BadFile("bomb.png", png_claiming_400_megapixels(), "resize", "skipped",
                "400 megapixels, over resize.max_megapixels (200); refused before decoding"),
    ]
    if features.check("webp"):
        files.append(BadFile("photo.webp", webp()))
    return files
