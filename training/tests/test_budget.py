import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from ranet.budget import Clock, Ema, Sgd, train_budgeted
from ranet.config import get_preset
from ranet.data import REPO_ROOT, DataError, Split, load_files, read_jpeg_sheets, train_val_indices
from ranet.model import RANet, normalise
from ranet.train import Device, exit_losses, load_model

JPEG_ROOT = REPO_ROOT.parent / "shared" / "data" / "cifar-10-train-jpeg"


def _data(images, labels, n_train, n_val):
    return {"train": Split(images[:n_train].copy(), labels[:n_train].copy()),
            "val": Split(images[-n_val:].copy(), labels[-n_val:].copy())}


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_with_a_tensor_learning_rate_matches_torch_sgd(test_images, nesterov):
    images, labels = test_images
    tc = replace(get_preset("tiny").budget_recipe, nesterov=nesterov, weight_decay=5e-4)
    torch.manual_seed(0)
    ours, ref = RANet(get_preset("tiny").model), RANet(get_preset("tiny").model)
    ref.load_state_dict(ours.state_dict())
    sgd = Sgd(list(ours.parameters()), tc)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=tc.momentum, nesterov=nesterov,
                          weight_decay=tc.weight_decay)
    x = normalise(torch.from_numpy(images[:32]), ours.cfg.mean, ours.cfg.std)
    y = torch.from_numpy(labels[:32])
    for lr in (0.1, 0.05, 0.2):
        for g in opt.param_groups:
            g["lr"] = lr
        sgd.set_lr(lr)
        ours.zero_grad(set_to_none=True)
        exit_losses(ours(x), y, tc).backward()
        for a, b in zip(ours.parameters(), ref.parameters()):  # the same gradients: only the updates are compared
            b.grad = a.grad.clone()
        sgd.step()
        opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(next(ours.parameters()), next(RANet(get_preset("tiny").model).parameters()))


def test_the_weight_average_follows_the_weights():
    torch.manual_seed(0)
    model = RANet(get_preset("tiny").model)
    ema = Ema(model, decay=0.9)
    first = next(model.parameters())
    start = first.detach().clone()
    with torch.no_grad():
        first.add_(1.0)
    for _ in range(200):
        ema.update()
    averaged = next(ema.model.parameters())
    torch.testing.assert_close(averaged, start + 1.0, rtol=0, atol=1e-4)


def test_budgeted_training_ends_inside_its_budget_with_an_exportable_checkpoint(test_images, tmp_path):
    images, labels = test_images
    p = get_preset("tiny")
    clock = Clock(12.0, time.time())
    summary = train_budgeted(p.model, p.budget_recipe, _data(images, labels, 384, 128), tmp_path,
                             Device.pick("cpu"), clock, "test images", log=lambda *_: None)
    assert clock.elapsed() < clock.seconds + 1.0
    assert summary["epochs"] >= 1 and summary["step"] == "eager"
    assert summary["steps"] >= summary["epochs"] * (384 // 64) - 6
    model, ckpt = load_model(tmp_path / "model.pt")
    assert ckpt["data_source"] == "test images" and ckpt["weights"] in ("raw", "ema")
    assert ckpt["train_config"]["epochs"] == summary["epochs"]
    assert len(ckpt["history"]) == summary["epochs"] and len(ckpt["history"][-1]["val_accuracy"]) == 6
    assert {f.name for f in tmp_path.iterdir()} == {"model.pt", "resume.pt", "ema.pt"}
    with torch.no_grad():
        assert len(model.eval()(torch.zeros(1, 3, 32, 32))) == 6


def test_a_resumed_run_continues_the_weights_and_the_history(test_images, tmp_path):
    images, labels = test_images
    p = get_preset("tiny")
    data = _data(images, labels, 256, 128)
    first = train_budgeted(p.model, p.budget_recipe, data, tmp_path / "a", Device.pick("cpu"),
                           Clock(6.0, time.time()), "test images", log=lambda *_: None)
    second = train_budgeted(p.model, p.budget_recipe, data, tmp_path / "b", Device.pick("cpu"),
                            Clock(6.0, time.time()), "test images", resume=tmp_path / "a", log=lambda *_: None)
    _, ckpt = load_model(tmp_path / "b" / "model.pt")
    assert [h["epoch"] for h in ckpt["history"]] == list(range(1, second["epochs"] + 1))
    assert second["epochs"] > first["epochs"] and second["steps"] > first["steps"]

    from_file = train_budgeted(p.model, p.budget_recipe, data, tmp_path / "d", Device.pick("cpu"),
                               Clock(6.0, time.time()), "test images", resume=tmp_path / "b" / "model.pt",
                               log=lambda *_: None)
    assert from_file["epochs"] > second["epochs"]

    other = replace(p.model, head_channels=16)
    with pytest.raises(RuntimeError, match="another model config"):
        train_budgeted(other, p.budget_recipe, data, tmp_path / "c", Device.pick("cpu"), Clock(6.0, time.time()),
                       "test images", resume=tmp_path / "a", log=lambda *_: None)


def _jpeg_root():
    if not (JPEG_ROOT / "train-0.jpg").exists():
        pytest.fail(f"the JPEG training sheets are needed for this test: {JPEG_ROOT} is missing")
    return JPEG_ROOT


def test_the_jpeg_sheets_hold_the_training_set_in_its_order():
    from ranet.data import DEFAULT_ROOT, TRAIN_FILES

    sheets = read_jpeg_sheets(_jpeg_root())
    exact = load_files(DEFAULT_ROOT, TRAIN_FILES)
    assert sheets.images.shape == exact.images.shape == (50000, 3, 32, 32)
    np.testing.assert_array_equal(sheets.labels, exact.labels)
    error = np.abs(sheets.images.astype(np.int16) - exact.images).mean(axis=(1, 2, 3))
    assert error.mean() < 2.5 and error.max() < 12  # lossy, but every tile is its own image
    train, val = train_val_indices(len(sheets))
    assert len(train) == 45000 and len(val) == 5000


def test_a_corrupt_sheet_is_refused_by_its_checksum(tmp_path):
    shutil.copytree(_jpeg_root(), tmp_path / "sheets")
    sheet = tmp_path / "sheets" / "train-2.jpg"
    sheet.chmod(0o644)
    blob = bytearray(sheet.read_bytes())
    blob[5000] ^= 0xFF
    sheet.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train-2.jpg: SHA-256"):
        read_jpeg_sheets(tmp_path / "sheets")
