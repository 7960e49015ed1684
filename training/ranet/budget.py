"""Training inside a wall-clock budget, for a GPU machine lent for minutes.

``train_budgeted`` starts the clock when the process starts (data loading counts), times the first steps, an
evaluation and a checkpoint save, then fits a one-cycle schedule to the epochs that fit the time left, and refits it
after every epoch if the epochs run slower than planned. It writes a usable checkpoint after every epoch, so a call
that is killed still leaves weights behind.

RANet on CIFAR is a few thousand small kernels per step: eager PyTorch spends its time launching them (about 41 ms a
forward at any batch up to 64 on an H100). On CUDA the step (forward, every exit's loss, backward and the SGD update)
is captured once as a CUDA graph and replayed; only the batch gather and augmentation run eagerly, into the graph's
static input. Where capture fails the same step runs eagerly, and the log says so.

Files written to ``out``:
    model.pt     the weights to export (the moving average or the raw weights, whichever is more accurate on
                 validation) with the configs, history, device, library versions and data source; what
                 ``python -m ranet export`` reads.
    resume.pt    the raw weights, steps taken and history;  ema.pt  the average.
``--resume`` continues from such a folder, or from any checkpoint file with weights and a model config (``model.pt``,
a model directory's ``weights.pt``), with a schedule fitted to the new budget; momentum starts again from zero.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .config import RANetConfig, TrainConfig, to_dict
from .data import Split, augment
from .model import RANet, resize_by_matmul
from .train import Device, accuracy_per_exit, exit_losses, lr_at, predict, save_checkpoint, versions


@dataclass
class Clock:
    """A wall-clock budget that started at ``started`` (``time.time()``)."""

    seconds: float
    started: float

    def elapsed(self) -> float:
        return time.time() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Sgd:
    """SGD with (Nesterov) momentum and weight decay on every parameter, with the learning rate in a device tensor
    so that a captured step reads the current rate on every replay."""

    def __init__(self, params: list[Tensor], tc: TrainConfig) -> None:
        self.params = params
        self.momentum, self.nesterov, self.weight_decay = tc.momentum, tc.nesterov, tc.weight_decay
        self.bufs = [torch.zeros_like(p) for p in params]
        self.lr = torch.zeros((), device=params[0].device)

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if self.weight_decay:
            torch._foreach_add_(grads, self.params, alpha=self.weight_decay)
        torch._foreach_mul_(self.bufs, self.momentum)
        torch._foreach_add_(self.bufs, grads)
        if self.nesterov:
            update = torch._foreach_add(grads, self.bufs, alpha=self.momentum)
            torch._foreach_mul_(update, self.lr)
        else:
            update = torch._foreach_mul(self.bufs, self.lr)
        torch._foreach_sub_(self.params, update)

    def set_lr(self, lr: float) -> None:
        self.lr.fill_(lr)


class Ema:
    """An exponential moving average of a model's floating-point parameters and buffers, as a model of its own."""

    def __init__(self, model: RANet, decay: float) -> None:
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.updates = decay, 0
        self._src = [v for v in model.state_dict().values() if v.is_floating_point()]
        self._dst = [v for v in self.model.state_dict().values() if v.is_floating_point()]
        self._src_int = [v for v in model.state_dict().values() if not v.is_floating_point()]
        self._dst_int = [v for v in self.model.state_dict().values() if not v.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))  # a short memory while the weights move fast
        torch._foreach_lerp_(self._dst, self._src, 1 - d)

    @torch.no_grad()
    def sync_counters(self) -> None:
        for d, s in zip(self._dst_int, self._src_int):
            d.copy_(s)


class Step:
    """One training step on static input buffers: replayed from a CUDA graph where it could be captured."""

    def __init__(self, model: RANet, sgd: Sgd, tc: TrainConfig, dev: Device, batch: int, graphs: bool,
                 first: tuple[Tensor, Tensor], channels_last: bool, log=print) -> None:
        self.model, self.sgd, self.tc, self.dev = model, sgd, tc, dev
        c, h, w = first[0].shape[1:]
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.x = torch.zeros(batch, c, h, w, device=dev.torch).contiguous(memory_format=fmt)
        self.y = torch.zeros(batch, dtype=torch.long, device=dev.torch)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss: Tensor | None = None
        self.mode = "eager"
        if graphs and dev.torch.type == "cuda":
            try:
                self._capture(*first)
                self._verify()
                self.mode = "cuda-graph"
            except Exception as e:  # noqa: BLE001 - any capture failure falls back to the eager step
                log(f"CUDA graph step unusable ({type(e).__name__}: {e}); training eagerly")
                self.graph = None
                torch.cuda.synchronize()
                self.model.zero_grad(set_to_none=True)
                torch._foreach_zero_(self.sgd.bufs)

    def _forward_backward_update(self) -> Tensor:
        with torch.autocast(self.dev.torch.type, dtype=torch.bfloat16, enabled=self.dev.bf16, cache_enabled=False):
            logits = self.model(self.x)
        loss = exit_losses(logits, self.y, self.tc)
        loss.backward()
        self.sgd.step()
        return loss.detach()

    def _capture(self, x: Tensor, y: Tensor) -> None:
        """Warm up on a side stream with the learning rate at zero (so the weights do not move), then capture."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.sgd.set_lr(0.0)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.model.zero_grad(set_to_none=True)
                self._forward_backward_update()
        torch.cuda.current_stream().wait_stream(side)
        torch._foreach_zero_(self.sgd.bufs)
        self.model.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.loss = self._forward_backward_update()
        self.graph = graph

    def _verify(self) -> None:
        """The replayed step must compute the eager step's loss on the same batch and move the weights."""
        assert self.graph is not None and self.loss is not None
        self.sgd.set_lr(0.0)
        self.graph.replay()
        replayed = float(self.loss.item())
        with torch.no_grad(), torch.autocast(self.dev.torch.type, dtype=torch.bfloat16, enabled=self.dev.bf16):
            eager = float(exit_losses(self.model(self.x), self.y, self.tc).item())
        if not math.isfinite(replayed) or abs(replayed - eager) > 0.02 * abs(eager) + 1e-3:
            raise RuntimeError(f"replayed loss {replayed:.4f} differs from the eager loss {eager:.4f}")
        before = self.sgd.params[0].detach().clone()
        self.sgd.set_lr(1e-4)
        self.graph.replay()
        torch.cuda.synchronize()
        if torch.equal(before, self.sgd.params[0]):
            raise RuntimeError("a replayed step left the weights unchanged")
        torch._foreach_zero_(self.sgd.bufs)

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        self.x.copy_(x)
        self.y.copy_(y)
        if self.graph is not None:
            self.graph.replay()
            assert self.loss is not None
            return self.loss
        self.model.zero_grad(set_to_none=True)
        return self._forward_backward_update()


def _layout(model: RANet, channels_last: bool) -> None:
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def make_step(model: RANet, sgd: Sgd, tc: TrainConfig, dev: Device, batch: int, graphs: bool,
              first: tuple[Tensor, Tensor], log=print) -> tuple[Step, list[dict]]:
    """The fastest usable step, and what was measured to choose it.

    On CUDA with graphs, the step is captured in channels_last with each resize implementation (interpolate, matrix
    products), a few replays of each are timed at a learning rate of zero, and the faster is kept. Elsewhere, or if
    no capture is usable, the eager step in the device's layout.
    """
    if not (graphs and dev.torch.type == "cuda"):
        _layout(model, dev.channels_last)
        return Step(model, sgd, tc, dev, batch, False, first, dev.channels_last, log), []
    # NCHW is left out: on an H200 its captured step took 128.7 ms (matmul resize) and 265.7 ms (interpolate) against
    # 73.0 and 75.9 ms in channels_last, and each layout costs about 40 s of cuDNN autotuning to try.
    variants = [(True, False), (True, True)]
    timings: list[dict] = []
    best: tuple[float, bool, bool] | None = None
    step: Step | None = None
    for channels_last, matmul in variants:
        step = None
        torch.cuda.empty_cache()
        _layout(model, channels_last)
        resize_by_matmul(matmul)
        name = {"channels_last": channels_last, "resize": "matmul" if matmul else "interpolate"}
        t = time.time()
        step = Step(model, sgd, tc, dev, batch, True, first, channels_last, log)
        if step.graph is None:
            timings.append({**name, "error": "capture unusable"})
            continue
        ready = time.time() - t
        sgd.set_lr(0.0)
        torch.cuda.synchronize()
        t = time.time()
        for _ in range(6):
            step.graph.replay()
        torch.cuda.synchronize()
        ms = (time.time() - t) / 6 * 1000
        timings.append({**name, "ms_per_step": round(ms, 2), "ready_seconds": round(ready, 1)})
        log(f"step {json.dumps(name)}: {ms:.1f} ms (captured in {ready:.1f} s)")
        if best is None or ms < best[0]:
            best = (ms, channels_last, matmul)
    torch._foreach_zero_(sgd.bufs)
    if best is None:
        step = None
        _layout(model, dev.channels_last)
        resize_by_matmul(False)
        return Step(model, sgd, tc, dev, batch, False, first, dev.channels_last, log), timings
    _, channels_last, matmul = best
    if (channels_last, matmul) != variants[-1] or step is None or step.graph is None:
        step = None  # the faster variant was not the last captured: capture it again (each capture replaces the grads)
        torch.cuda.empty_cache()
        _layout(model, channels_last)
        resize_by_matmul(matmul)
        step = Step(model, sgd, tc, dev, batch, True, first, channels_last, log)
        torch._foreach_zero_(sgd.bufs)
    return step, timings


def _sync(dev: Device) -> None:
    if dev.torch.type == "cuda":
        torch.cuda.synchronize(dev.torch)


def _cpu_state(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def train_budgeted(mc: RANetConfig, tc: TrainConfig, data: dict[str, Split], out: Path, dev: Device, clock: Clock,
                   data_source: str, graphs: bool = True, resume: Path | None = None, log=print) -> dict:
    """Trains until the budget is spent (see the module's docstring); returns a summary.

    Args:
        tc: the recipe; its ``epochs`` is ignored and replaced by the fitted number in what is written.
        data: ``train`` and ``val`` splits (uint8 images, labels).
        clock: the budget; everything, the final evaluation and save included, ends inside it.
        data_source: where the training images came from, recorded in the checkpoint.
        resume: an earlier run's folder (``resume.pt``, and ``ema.pt`` if present) or a checkpoint file: training
            continues from those weights with a fresh schedule fitted to this budget, and the history goes on.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    if dev.torch.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = RANet(mc).to(dev.torch)
    params = list(model.parameters())
    sgd = Sgd(params, tc)
    history: list[dict] = []
    prior_wall, prior_steps = 0.0, 0
    if resume is not None:
        path = resume / "resume.pt" if resume.is_dir() else resume
        state = torch.load(path, map_location=dev.torch, weights_only=False)
        if state["model_config"] != to_dict(mc):
            raise RuntimeError(f"{path} holds another model config ({state['model_config']['name']})")
        model.load_state_dict(state["model"])
        history, prior_wall = state.get("history", []), state.get("wall_seconds", 0.0)
        prior_steps = state.get("steps", state.get("budget", {}).get("steps", 0))
        log(f"resuming from {path} after {prior_steps} steps ({len(history)} epochs, {prior_wall:.0f} s)")
    images = torch.from_numpy(data["train"].images).to(dev.torch)
    labels = torch.from_numpy(data["train"].labels).to(dev.torch)
    mean = torch.tensor(mc.mean, device=dev.torch).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(mc.std, device=dev.torch).view(1, -1, 1, 1) * 255.0
    batch = tc.batch_size
    spe = len(labels) // batch
    if spe < 1:
        raise ValueError(f"batch size {batch} is larger than the {len(labels)} training images")

    def batch_at(order: Tensor, it: int) -> tuple[Tensor, Tensor]:
        idx = order[it * batch : (it + 1) * batch]
        return (augment(images[idx]).float() - mean) / std, labels[idx]

    def epoch_order(epoch: int) -> Tensor:
        gen = torch.Generator().manual_seed(tc.seed * 1000 + epoch)
        return torch.randperm(len(labels), generator=gen).to(dev.torch)

    epoch0 = len(history)
    order = epoch_order(epoch0)
    model.train()
    t = time.time()
    step, variants = make_step(model, sgd, tc, dev, batch, graphs, batch_at(order, 0), log)
    _sync(dev)
    log(f"step ready in {time.time() - t:.1f} s ({step.mode}); {spe} steps an epoch of {batch}; "
        f"{clock.left():.0f} s of the budget left")
    ema = Ema(model, tc.ema) if tc.ema > 0 else None
    if ema is not None and resume is not None and (resume / "ema.pt").is_file():
        ema.model.load_state_dict(torch.load(resume / "ema.pt", map_location=dev.torch, weights_only=False))
        ema.updates = 10**6  # the full decay from the first update on

    def evaluate() -> tuple[list[float], list[float] | None]:
        raw = accuracy_per_exit(predict(model, data["val"].images, dev), data["val"].labels)
        avg = None
        if ema is not None:
            ema.sync_counters()
            avg = accuracy_per_exit(predict(ema.model, data["val"].images, dev), data["val"].labels)
        model.train()
        return raw, avg

    def checkpoint(total_steps: int, steps: int, wall: float, raw: list[float], avg: list[float] | None) -> str:
        """Writes model.pt (the better weights on validation) and the resume files; returns which weights."""
        use_ema = avg is not None and float(np.mean(avg)) >= float(np.mean(raw))
        chosen = ema.model if use_ema and ema is not None else model
        fitted = replace(tc, epochs=math.ceil(total_steps / spe))
        meta = {
            "model_config": to_dict(mc), "train_config": to_dict(fitted), "epoch": len(history),
            "wall_seconds": wall, "history": history, "device": dev.describe(), "versions": versions(),
            "data_source": data_source, "weights": "ema" if use_ema else "raw",
            "budget": {"seconds": clock.seconds, "step": step.mode, "steps": steps, "total_steps": total_steps,
                       "variants": variants},
        }
        save_checkpoint(out / "model.pt", {"model": _cpu_state(chosen), **meta})
        save_checkpoint(out / "resume.pt", {"model": _cpu_state(model), "steps": steps, **meta})
        if ema is not None:
            save_checkpoint(out / "ema.pt", _cpu_state(ema.model))  # type: ignore[arg-type]
        return "ema" if use_ema else "raw"

    # Time what one epoch costs besides its steps: an evaluation and a checkpoint. The first evaluation autotunes
    # cuDNN for its shapes (8 s against 0.7 s on an H200), so the second is the one timed.
    raw, avg = evaluate()
    t = time.time()
    raw, avg = evaluate()
    t_eval = time.time() - t
    t = time.time()
    checkpoint(spe, 0, prior_wall, raw, avg)
    t_save = time.time() - t
    reserve = 1.25 * (t_eval + t_save) + 2.0  # the last epoch's evaluation and save, and a margin

    # The first steps are timed (they are the start of epoch 1, at the warm-up's learning rate); then the schedule
    # is fitted to the epochs that fit the time left.
    probe = min(spe, 12 if dev.torch.type == "cuda" else 3)
    total = spe * 10**3  # provisional, until the probe is timed
    done, train_wall, epoch = 0, prior_wall, epoch0
    weights, loss = "raw", None
    t = epoch_started = time.time()
    while done < total:
        it = done % spe
        if it == 0 and done > 0:
            order = epoch_order(epoch)
        sgd.set_lr(lr_at(done, total, tc))
        loss = step(*batch_at(order, it))
        if ema is not None:
            ema.update()
        done += 1
        if done == probe:
            _sync(dev)
            t_step = 1.05 * (time.time() - t) / probe  # with a margin: later steps may run a little slower
            epoch_cost = spe * t_step + t_eval + t_save
            affordable = (clock.left() - reserve + probe * t_step) / epoch_cost
            epochs = max(1, math.floor(affordable))
            if affordable >= 1:
                total = epochs * spe
            else:
                total = max(probe, probe + math.floor((clock.left() - reserve) / t_step))
            log(f"timing: {t_step * 1000:.1f} ms a step, {t_eval:.2f} s an evaluation, {t_save:.2f} s a checkpoint; "
                f"schedule fitted to {total} steps ({total / spe:.2f} epochs) in {clock.left():.0f} s")
        end_of_epoch = done % spe == 0 or done >= total
        if not end_of_epoch and clock.left() < reserve:
            log(f"out of time inside epoch {epoch + 1}: stopping at step {done} of {total}")
            end_of_epoch, total = True, done
        if not end_of_epoch:
            continue
        _sync(dev)
        train_wall += time.time() - epoch_started
        raw, avg = evaluate()
        epoch += 1
        record = {"epoch": epoch, "loss": round(float(loss.item()), 4) if loss is not None else None,
                  "lr": round(float(sgd.lr.item()), 5), "val_raw": raw, "val_ema": avg,
                  "elapsed_seconds": round(clock.elapsed(), 1), "wall_seconds": round(train_wall, 1)}
        better = avg if avg is not None and float(np.mean(avg)) >= float(np.mean(raw)) else raw
        history.append({**record, "val_accuracy": better})
        weights = checkpoint(total, prior_steps + done, train_wall, raw, avg)
        log(json.dumps({**record, "val_raw": [round(a * 100, 2) for a in raw],
                        "val_ema": [round(a * 100, 2) for a in avg] if avg else None, "weights": weights,
                        "left_seconds": round(clock.left(), 1)}))
        # Refit: the epochs that still fit at the pace measured so far, never more than planned.
        pace = (time.time() - t) / max(1, epoch - epoch0)
        fits = math.floor((clock.left() - reserve) / pace) if pace > 0 else 0
        remaining = math.ceil((total - done) / spe)
        if done < total and fits < remaining:
            total = done + max(0, fits) * spe
            log(f"behind the plan: schedule refitted to end after {total} steps")
        epoch_started = time.time()
    resize_by_matmul(False)
    summary = {"epochs": len(history), "steps": prior_steps + done, "step": step.mode, "variants": variants,
               "train_seconds": round(train_wall, 1), "elapsed_seconds": round(clock.elapsed(), 1),
               "budget_seconds": clock.seconds, "weights": weights,
               "val_accuracy": history[-1]["val_accuracy"] if history else None}
    log(json.dumps({"done": summary}))
    return summary
