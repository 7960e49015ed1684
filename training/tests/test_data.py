import gzip
import hashlib

import numpy as np
import pytest

from ranet.data import RECORD, DataError, augment, data_root, read_batch_file, train_val_indices


def _records(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    rec = rng.integers(0, 256, size=(n, RECORD), dtype=np.uint8)
    rec[:, 0] = np.arange(n) % 10
    return rec.tobytes()


def test_reader_reads_raw_and_gzip_files_alike(tmp_path):
    data = _records(20)
    (tmp_path / "a.bin").write_bytes(data)
    (tmp_path / "b.bin.gz").write_bytes(gzip.compress(data))
    raw, gz = read_batch_file(tmp_path, "a.bin"), read_batch_file(tmp_path, "b.bin")
    assert raw.images.shape == (20, 3, 32, 32)
    assert np.array_equal(raw.images, gz.images)
    assert list(raw.labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    # Channel planes are row-major: byte 1 of a record is the top-left red pixel.
    assert raw.images[3, 0, 0, 0] == data[3 * RECORD + 1]
    assert raw.images[3, 2, 31, 31] == data[4 * RECORD - 1]


def test_reader_verifies_checksums(tmp_path):
    data = _records(5)
    (tmp_path / "x.bin").write_bytes(data)
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  x.bin\n")
    assert len(read_batch_file(tmp_path, "x.bin")) == 5
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  x.bin\n")
    with pytest.raises(DataError, match="SHA-256 does not match"):
        read_batch_file(tmp_path, "x.bin")


def test_missing_data_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataError, match="CASCADE_DATA") as err:
        read_batch_file(tmp_path, "data_batch_1.bin")
    assert str(tmp_path) in str(err.value)


def test_truncated_file_is_refused(tmp_path):
    (tmp_path / "t.bin").write_bytes(_records(2)[:-7])
    with pytest.raises(DataError, match="truncated"):
        read_batch_file(tmp_path, "t.bin")


def test_data_root_prefers_flag_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert str(data_root("/elsewhere")) == "/elsewhere"


def test_validation_split_is_fixed_and_disjoint():
    tr, va = train_val_indices(50000)
    tr2, va2 = train_val_indices(50000)
    assert len(va) == 5000 and len(tr) == 45000
    assert np.array_equal(va, va2)
    assert not set(tr) & set(va)


def test_real_test_batch_has_1000_images_per_class():
    split = read_batch_file(data_root(), "test_batch.bin")
    assert np.bincount(split.labels).tolist() == [1000] * 10


def test_augment_keeps_shape_and_pixels_from_the_image():
    import torch

    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1
    y = augment(x)
    assert y.shape == x.shape
    values = set(x.flatten().tolist()) | {0.0}
    assert set(y.flatten().tolist()) <= values
