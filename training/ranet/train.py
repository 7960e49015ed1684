"""Training with self-describing checkpoints that resume where they stopped.

The whole split lives on the training device as uint8; batches are augmented and normalised there, so the GPU
path never waits on a data loader.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .config import RANetConfig, TrainConfig, to_dict
from .data import Split, augment
from .model import RANet, normalise


@dataclass
class Device:
    """Where and how to train: a torch device and whether to use bf16 autocast and channels_last."""

    torch: torch.device
    bf16: bool
    channels_last: bool

    @staticmethod
    def pick(name: str = "auto") -> Device:
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(name)
        gpu = dev.type == "cuda"
        return Device(dev, bf16=gpu, channels_last=gpu)

    def describe(self) -> str:
        if self.torch.type == "cuda":
            return torch.cuda.get_device_name(self.torch)
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    """Library versions for a checkpoint's metadata (a training machine may lack the export libraries)."""
    out = {"python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}
    for name in ("onnx", "onnxruntime"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = "absent"
    out["cuda"] = torch.version.cuda or "none"
    if torch.cuda.is_available():
        out["cudnn"] = str(torch.backends.cudnn.version())
        out["gpu"] = torch.cuda.get_device_name()
    return out


def exit_losses(logits: list[Tensor], labels: Tensor, tc: TrainConfig) -> Tensor:
    """Sum of per-exit cross-entropy; optionally early exits also learn from the last exit's soft labels."""
    total = logits[0].new_zeros(())
    teacher = None
    if tc.distill > 0:
        teacher = F.softmax(logits[-1].detach().float() / tc.temperature, dim=1)
    for i, z in enumerate(logits):
        ce = F.cross_entropy(z.float(), labels, label_smoothing=tc.label_smoothing)
        if teacher is not None and i < len(logits) - 1:
            kd = F.kl_div(F.log_softmax(z.float() / tc.temperature, dim=1), teacher, reduction="batchmean")
            ce = (1 - tc.distill) * ce + tc.distill * tc.temperature**2 * kd
        total = total + ce
    return total


def lr_at(step: int, total: int, tc: TrainConfig) -> float:
    if tc.schedule == "onecycle":
        warm = max(1, int(tc.warmup * total))
        if step < warm:
            return tc.lr * (step + 1) / warm
        return tc.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    if tc.schedule == "step":
        return tc.lr * (0.1 ** int(step >= total * 0.5)) * (0.1 ** int(step >= total * 0.75))
    raise ValueError(f"unknown schedule {tc.schedule!r}; use 'onecycle' or 'step'")


@torch.no_grad()
def predict(model: RANet, images: np.ndarray, dev: Device, batch: int = 1000) -> np.ndarray:
    """Softmax of every exit: float32 [exits, N, classes]."""
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        x = normalise(torch.from_numpy(images[i : i + batch]).to(dev.torch), model.cfg.mean, model.cfg.std)
        if dev.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.torch.type, dtype=torch.bfloat16, enabled=dev.bf16):
            logits = model(x)
        outs.append(torch.stack([F.softmax(z.float(), dim=1) for z in logits]).cpu().numpy())
    return np.concatenate(outs, axis=1)


def accuracy_per_exit(probs: np.ndarray, labels: np.ndarray) -> list[float]:
    return [float((p.argmax(1) == labels).mean()) for p in probs]


def save_checkpoint(path: Path, state: dict) -> None:
    """Writes atomically so an interrupted save never leaves a broken checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_model(path: Path, device: str = "cpu") -> tuple[RANet, dict]:
    """A model rebuilt from a checkpoint's own config, and the checkpoint."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    model = RANet(RANetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["model_config"].items()}))
    model.load_state_dict(ckpt["model"])
    return model, ckpt


def train(mc: RANetConfig, tc: TrainConfig, data: dict[str, Split], out: Path, dev: Device,
          log=print, stop_after: int | None = None) -> dict:
    """Trains, checkpointing after every epoch to ``out/last.pt`` and resuming from it when present.

    Args:
        stop_after: end this call after that many epochs (for time-boxed sessions); a later call resumes.

    Returns:
        A summary: per-exit validation accuracy of the final weights, epochs, wall time.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    model = RANet(mc).to(dev.torch)
    if dev.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay = [p for n, p in model.named_parameters()]
    opt = torch.optim.SGD(decay, lr=tc.lr, momentum=tc.momentum, nesterov=tc.nesterov, weight_decay=tc.weight_decay)
    start_epoch, wall, history = 0, 0.0, []
    last = out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location=dev.torch, weights_only=False)
        if ckpt["model_config"] != to_dict(mc) or ckpt["train_config"] != to_dict(tc):
            raise RuntimeError(f"{last} was written by another config; use a fresh --out folder")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        start_epoch, wall, history = ckpt["epoch"], ckpt["wall_seconds"], ckpt["history"]
        log(f"resuming from {last} after epoch {start_epoch}")

    images = torch.from_numpy(data["train"].images).to(dev.torch)
    labels = torch.from_numpy(data["train"].labels).to(dev.torch)
    steps_per_epoch = len(labels) // tc.batch_size
    total_steps = steps_per_epoch * tc.epochs
    end = tc.epochs if stop_after is None else min(tc.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end):
        t0 = time.time()
        model.train()
        gen = torch.Generator().manual_seed(tc.seed * 1000 + epoch)
        order = torch.randperm(len(labels), generator=gen).to(dev.torch)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}", file=sys.stderr,
                   mininterval=5, disable=None)
        running = 0.0
        for it in bar:
            step = epoch * steps_per_epoch + it
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total_steps, tc)
            idx = order[it * tc.batch_size : (it + 1) * tc.batch_size]
            x = normalise(augment(images[idx]), mc.mean, mc.std)
            if dev.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.torch.type, dtype=torch.bfloat16, enabled=dev.bf16):
                logits = model(x)
            loss = exit_losses(logits, labels[idx], tc)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if it % 20 == 0:
                running = loss.item()
                bar.set_postfix(loss=f"{running:.3f}", lr=f"{opt.param_groups[0]['lr']:.3f}")
        wall += time.time() - t0
        val_acc = accuracy_per_exit(predict(model, data["val"].images, dev), data["val"].labels)
        record = {"epoch": epoch + 1, "loss": running, "val_accuracy": val_acc, "wall_seconds": round(wall, 1)}
        history.append(record)
        log(json.dumps(record))
        save_checkpoint(last, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
            "epoch": epoch + 1, "wall_seconds": wall, "history": history,
            "model_config": to_dict(mc), "train_config": to_dict(tc),
            "device": dev.describe(), "versions": versions(),
        })
    last = history[-1]["val_accuracy"] if history else []
    return {"epochs": len(history), "wall_seconds": wall, "val_accuracy": last,
            "history": history}
