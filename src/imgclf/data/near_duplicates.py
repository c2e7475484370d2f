"""Near-duplicate images: the same picture re-encoded, resized or recompressed, which the split
stage's SHA-256 of the bytes misses.

Each image gets a difference hash (dHash): the image in grey at 17x16, one bit per pair of
neighbouring pixels, set where the right one is brighter. 256 bits that survive re-encoding,
resizing and small brightness changes, and differ in about half their bits between unrelated
pictures. Two images whose hashes differ in at most ``max_bits`` bits are the same picture.

Pairs are found without comparing every pair: split into ``max_bits + 1`` bands, two hashes within
``max_bits`` bits agree on at least one whole band (pigeonhole), so only images that share a band
value are compared. Memory: 32 bytes per image.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

HASH_HEIGHT = 16
HASH_BITS = HASH_HEIGHT * HASH_HEIGHT
CHUNK = 64  # files per task sent to a worker
# Images smaller than this on a side are compared by their bytes only: their detail is below what
# the hash tells apart (the 1,797 digits, 8x8 enlarged to 32x32, gave 264 "same pictures" at 8 bits).
MIN_SIDE = 64
# A hash with fewer bits set than this is of a nearly flat image (one colour, a smooth gradient):
# all such images hash alike whatever their colour, so they are never called the same picture.
MIN_DETAIL_BITS = 16


def difference_hash(path: Path) -> bytes | None:
    """The 256-bit difference hash of an image file (32 bytes); None where it cannot be decoded (the
    resize stage reports such files), is smaller than ``MIN_SIDE`` on a side, or is too flat to be
    told apart from other flat images: such images are compared by their bytes only."""
    try:
        with Image.open(path) as image:
            if min(image.size) < MIN_SIDE:
                return None
            if image.format == "JPEG":
                image.draft("L", (4 * HASH_HEIGHT, 4 * HASH_HEIGHT))  # decode at a reduced scale: fast
            grey = image.convert("L").resize((HASH_HEIGHT + 1, HASH_HEIGHT), Image.Resampling.BOX)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    pixels = np.asarray(grey, dtype=np.int16)
    brighter = pixels[:, 1:] > pixels[:, :-1]
    if brighter.sum() < MIN_DETAIL_BITS or (~brighter).sum() < MIN_DETAIL_BITS:
        return None  # too flat to tell apart from other flat images
    return np.packbits(brighter).tobytes()


def _hash_chunk(paths: Sequence[Path]) -> list[bytes | None]:
    return [difference_hash(path) for path in paths]


def hash_files(paths: Sequence[Path], workers: int | None = None) -> list[bytes | None]:
    """:func:`difference_hash` of every file, on all cores, with a progress bar."""
    chunks = [paths[start:start + CHUNK] for start in range(0, len(paths), CHUNK)]
    context = multiprocessing.get_context("forkserver")
    hashes: list[bytes | None] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor, \
            tqdm(total=len(paths), desc="perceptual hashes", unit="image", disable=None) as progress:
        for hashed in executor.map(_hash_chunk, chunks):
            hashes += hashed
            progress.update(len(hashed))
    return hashes


def hash_distance(first: bytes, second: bytes) -> int:
    """How many of the 256 bits differ."""
    return int(np.unpackbits(np.frombuffer(first, np.uint8) ^ np.frombuffer(second, np.uint8)).sum())


def near_pairs(hashes: Sequence[bytes | None], max_bits: int) -> list[tuple[int, int, int]]:
    """Every pair ``(i, j, bits)``, i < j, of hashes within ``max_bits`` bits of each other."""
    bands = max_bits + 1
    edges = np.linspace(0, HASH_BITS, bands + 1).astype(int)
    buckets: dict[tuple[int, bytes], list[int]] = {}
    for index, hashed in enumerate(hashes):
        if hashed is None:
            continue
        bits = np.unpackbits(np.frombuffer(hashed, np.uint8))
        for band in range(bands):
            buckets.setdefault((band, np.packbits(bits[edges[band]:edges[band + 1]]).tobytes()), []).append(index)
    found: dict[tuple[int, int], int] = {}
    for members in buckets.values():
        for position, first in enumerate(members):
            for second in members[position + 1:]:
                if (first, second) not in found:
                    distance = hash_distance(hashes[first], hashes[second])  # type: ignore[arg-type]
                    if distance <= max_bits:
                        found[(first, second)] = distance
    return sorted((first, second, bits) for (first, second), bits in found.items())


def group_keys(paths: Sequence[Path], digests: dict[Path, str],
               pairs: Iterable[tuple[int, int, int]]) -> dict[Path, str]:
    """Each file's key: the digest of the first file of its group, where a group is files joined by
    equal digests or by a near pair. Files that are alone keep their own digest."""
    parent = list(range(len(paths)))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_with_digest: dict[str, int] = {}
    links = [(index, first_with_digest.setdefault(digests[path], index)) for index, path in enumerate(paths)]
    for first, second, *_ in [*links, *pairs]:
        low, high = sorted((root(first), root(second)))
        parent[high] = low
    return {path: digests[paths[root(index)]] for index, path in enumerate(paths)}
