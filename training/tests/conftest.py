"""Shared fixtures: a tiny model whose batch-norm statistics come from real images, and the data folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranet.config import get_preset
from ranet.data import DataError, data_root, read_batch_file
from ranet.model import RANet, normalise


@pytest.fixture(scope="session")
def test_images() -> tuple[np.ndarray, np.ndarray]:
    """The first 512 CIFAR-10 test images and labels (the data folder is required, as in CI)."""
    try:
        split = read_batch_file(data_root(), "test_batch.bin")
    except DataError as e:
        pytest.fail(f"CIFAR-10 is needed for these tests: {e}")
    return split.images[:512], split.labels[:512]


@pytest.fixture(scope="session")
def tiny_model(test_images) -> RANet:
    """A tiny RANet with batch-norm statistics gathered from real images, so activations look trained."""
    torch.manual_seed(0)
    model = RANet(get_preset("tiny").model)
    model.train()
    with torch.no_grad():
        for i in range(0, 512, 128):
            model(normalise(torch.from_numpy(test_images[0][i : i + 128]), model.cfg.mean, model.cfg.std))
    return model.eval()
