"""Multiply-adds in the paper's convention (its official op counter).

Conv and linear layers count their multiply-adds, ReLU and pooling one op per element; batch norm, concatenation
and interpolation are free. Per-exit figures are cumulative: everything computed up to an exit, earlier heads
included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .model import ExitHead, RANet


class MacCounter:
    """Counts ops of the modules it hooks while a forward pass runs (per sample, batch-size independent)."""

    def __init__(self, model: nn.Module) -> None:
        self.total = 0
        counted = (nn.Conv2d, nn.Linear, nn.ReLU, nn.AdaptiveAvgPool2d)
        self._handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, counted)]

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        n = output.shape[0]
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            self.total += module.in_channels * k * output[0].numel() // module.groups
        elif isinstance(module, nn.Linear):
            self.total += module.in_features * module.out_features + module.out_features
        elif isinstance(module, nn.ReLU):
            self.total += output.numel() // n
        elif isinstance(module, nn.AdaptiveAvgPool2d):
            self.total += inputs[0][0].numel()

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _count(model: nn.Module, fn: Callable[[], object], marks: list[nn.Module] | None = None) -> tuple[int, list[int]]:
    counter = MacCounter(model)
    at_marks: list[int] = []
    handles = [m.register_forward_hook(lambda *_: at_marks.append(counter.total)) for m in marks or []]
    try:
        with torch.no_grad():
            fn()
    finally:
        counter.close()
        for h in handles:
            h.remove()
    return counter.total, at_marks


def exit_macs(model: RANet) -> list[int]:
    """Cumulative ops at each exit of the monolithic network, paper convention."""
    x = torch.zeros(1, 3, model.cfg.image_size, model.cfg.image_size)
    heads = [m for m in model.modules() if isinstance(m, ExitHead)]
    _, marks = _count(model, lambda: model(x), heads)
    return marks


def stage_macs(model: RANet) -> list[int]:
    """Ops of each stage run alone as deployed (each stage recomputes its own base feature from the image)."""
    x = torch.zeros(1, 3, model.cfg.image_size, model.cfg.image_size)
    out = []
    carried = None
    for s in range(len(model.subnets)):
        def run(s: int = s) -> None:
            nonlocal carried
            _, carried = model.run_stage(s, x, carried)
        total, _ = _count(model, run)
        out.append(total)
    return out


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
