"""CIFAR-10 in its official binary layout (raw or gzip), checked against SHA256SUMS, plus GPU-friendly batching."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
VAL_SIZE = 5000
VAL_SEED = 20200614  # fixed: the validation split must not move between runs
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO_ROOT.parent / "shared" / "data" / "cifar-10"  # ../shared beside the checkout
JPEG_SHEETS = [f"train-{i}.jpg" for i in range(5)]
JPEG_LABELS = "train-labels.bin"
SHEET_TILES = 100  # a sheet is 100 x 100 tiles of 32 x 32 pixels
JPEG_QUALITY_NOTE = "JPEG quality 95 sheets of the 50,000 training images, mean error 1.9 of 255 levels"


class DataError(RuntimeError):
    """The dataset is missing, truncated or fails its checksum."""


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, 3, 32, 32]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)


def data_root(flag: str | None = None) -> Path:
    """The dataset folder: the flag, else ``CASCADE_DATA``, else ``../shared/data/cifar-10`` beside the checkout."""
    return Path(flag or os.environ.get("CASCADE_DATA") or DEFAULT_ROOT)


def _read_checksums(root: Path) -> dict[str, str]:
    sums = root / "SHA256SUMS"
    if not sums.exists():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            out[name.lstrip("*")] = digest
    return out


def read_batch_file(root: Path, name: str, verify: bool = True) -> Split:
    """Reads ``name`` (or ``name.gz``) from ``root``; raises DataError naming the file and the fix."""
    raw_path, gz_path = root / name, root / f"{name}.gz"
    if raw_path.exists():
        data = raw_path.read_bytes()
    elif gz_path.exists():
        data = gzip.decompress(gz_path.read_bytes())
    else:
        raise DataError(
            f"CIFAR-10 file {name} (or {name}.gz) not found in {root.resolve()}: "
            "pass --data DIR or set CASCADE_DATA to the folder holding the binary batches"
        )
    if len(data) % RECORD:
        raise DataError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte records (truncated?)")
    if verify:
        expected = _read_checksums(root).get(name)
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise DataError(f"{name}: SHA-256 does not match SHA256SUMS in {root}; the file is corrupt")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max(initial=0) > 9:
        raise DataError(f"{name}: label {labels.max()} out of range 0-9")
    return Split(records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels)


def load_files(root: Path, names: list[str], verify: bool = True) -> Split:
    parts = [read_batch_file(root, n, verify) for n in names]
    return Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))


def class_names(root: Path) -> list[str]:
    meta = root / "batches.meta.txt"
    if meta.exists():
        names = [n.strip() for n in meta.read_text().splitlines() if n.strip()]
        if len(names) == 10:
            return names
    return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def train_val_indices(n: int, val_size: int = VAL_SIZE, seed: int = VAL_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of ``n`` training records into (train, validation) indices."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def load_cifar10(root: Path, verify: bool = True) -> dict[str, Split]:
    """``train`` (45,000), ``val`` (5,000 held out of the training set) and ``test`` (10,000)."""
    splits, _ = load_train_val(root, verify=verify)
    return {**splits, "test": load_files(root, TEST_FILES, verify)}


def read_jpeg_sheets(root: Path, verify: bool = True) -> Split:
    """The 50,000 training images from the JPEG sheet copy (five 3200 x 3200 sheets, quality 95), official order.

    Lossy (mean error about 2 of 255 levels): for carrying the training set to a machine where the exact files are
    not; validation and test figures that are reported come from the exact files.
    """
    from PIL import Image

    sums = _read_checksums(root)
    missing = [n for n in [*JPEG_SHEETS, JPEG_LABELS] if not (root / n).exists()]
    if missing:
        raise DataError(f"{', '.join(missing)} not found in {root.resolve()}: pass the cifar-10-train-jpeg folder")
    blobs = {n: (root / n).read_bytes() for n in [*JPEG_SHEETS, JPEG_LABELS]}
    if verify:
        for name, blob in blobs.items():
            if name in sums and hashlib.sha256(blob).hexdigest() != sums[name]:
                raise DataError(f"{name}: SHA-256 does not match SHA256SUMS in {root}; the file is corrupt")
    sheets = []
    for name in JPEG_SHEETS:
        with Image.open(io.BytesIO(blobs[name])) as im:
            pixels = np.asarray(im.convert("RGB"))
        side = 32 * SHEET_TILES
        if pixels.shape != (side, side, 3):
            raise DataError(f"{name}: {pixels.shape} pixels, expected {side} x {side} RGB")
        tiles = pixels.reshape(SHEET_TILES, 32, SHEET_TILES, 32, 3).transpose(0, 2, 4, 1, 3)
        sheets.append(tiles.reshape(-1, 3, 32, 32))
    labels = np.frombuffer(blobs[JPEG_LABELS], dtype=np.uint8).astype(np.int64)
    images = np.ascontiguousarray(np.concatenate(sheets))
    if len(labels) != len(images) or labels.max(initial=0) > 9:
        raise DataError(f"{JPEG_LABELS}: {len(labels)} labels (max {labels.max(initial=0)}) for {len(images)} images")
    return Split(images, labels)


def load_train_val(root: Path, jpeg: Path | None = None, verify: bool = True) -> tuple[dict[str, Split], str]:
    """``train`` (45,000) and ``val`` (5,000), from the exact binaries or the JPEG sheet copy, and which was read."""
    if jpeg is not None:
        full, source = read_jpeg_sheets(jpeg, verify), f"cifar-10-train-jpeg ({JPEG_QUALITY_NOTE})"
    else:
        full, source = load_files(root, TRAIN_FILES, verify), "cifar-10 binary batches (exact)"
    tr, va = train_val_indices(len(full))
    return {"train": Split(full.images[tr], full.labels[tr]), "val": Split(full.images[va], full.labels[va])}, source



def augment(images: Tensor, pad: int = 4) -> Tensor:
    """Random crop with zero padding and random horizontal flip, on whatever device the batch lives."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    flip = torch.rand(n, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)
