import pytest
import torch

from ranet.config import get_preset
from ranet.data import Split
from ranet.train import Device, load_model, train


def _subset(images, labels, n):
    return Split(images[:n].copy(), labels[:n].copy())


def test_train_checkpoints_and_resumes(test_images, tmp_path):
    images, labels = test_images
    data = {"train": _subset(images, labels, 256), "val": _subset(images, labels, 128)}
    p = get_preset("tiny")
    from dataclasses import replace

    tc = replace(p.train, epochs=2, batch_size=64)
    first = train(p.model, tc, data, tmp_path, Device.pick("cpu"), log=lambda *_: None, stop_after=1)
    assert first["epochs"] == 1 and len(first["history"]) == 1
    _, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["model_config"]["name"] == "tiny"

    resumed = train(p.model, tc, data, tmp_path, Device.pick("cpu"), log=lambda *_: None)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    _, ckpt = load_model(tmp_path / "last.pt")
    assert ckpt["epoch"] == 2


def test_resume_refuses_a_checkpoint_of_another_config(test_images, tmp_path):
    images, labels = test_images
    data = {"train": _subset(images, labels, 64), "val": _subset(images, labels, 64)}
    p = get_preset("tiny")
    from dataclasses import replace

    train(p.model, replace(p.train, epochs=1), data, tmp_path, Device.pick("cpu"), log=lambda *_: None)
    with pytest.raises(RuntimeError, match="another config"):
        train(p.model, replace(p.train, epochs=1, lr=0.3), data, tmp_path, Device.pick("cpu"), log=lambda *_: None)


def test_training_steps_reduce_the_loss_on_a_fixed_batch(test_images):
    from ranet.model import RANet, normalise
    from ranet.train import exit_losses

    images, labels = test_images
    p = get_preset("tiny")
    torch.manual_seed(0)
    model = RANet(p.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = normalise(torch.from_numpy(images[:64]), p.model.mean, p.model.std)
    y = torch.from_numpy(labels[:64])
    losses = []
    for _ in range(30):
        loss = exit_losses(model(x), y, p.train)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.7
