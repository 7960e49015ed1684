"""One ONNX graph per sub-network ("stage"), chained by tensor names (the model directory, training/README.md).

Stage s takes the uint8 image (normalised inside the graph) and, for s > 0, the previous stage's carried state;
it returns its exits' logits and, unless it is the last stage, its own carried state.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor, nn

from .model import RANet, normalise

OPSET = 17


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]  # batch dimension is -1

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class StageSpec:
    index: int
    exits: tuple[int, ...]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def file(self) -> str:
        return f"stage-{self.index}.onnx"


def state_names(model: RANet, stage: int) -> list[str]:
    chains = model.subnets[stage].chains
    return [f"state{stage}"] if len(chains) == 1 else [f"state{stage}_{m}" for m in range(len(chains))]


def stage_specs(model: RANet) -> list[StageSpec]:
    cfg = model.cfg
    image = TensorSpec("image", "uint8", (-1, 3, cfg.image_size, cfg.image_size))
    specs, first_exit = [], 0
    for s, subnet in enumerate(model.subnets):
        exits = tuple(range(first_exit, first_exit + len(subnet.heads)))
        first_exit += len(exits)
        inputs = [image]
        if s > 0:
            prev = model.subnets[s - 1].chains
            inputs += [TensorSpec(n, "float32", (-1, c, r, r)) for n, (c, r) in zip(state_names(model, s - 1), prev)]
        outputs = [TensorSpec(f"logits{e}", "float32", (-1, cfg.num_classes)) for e in exits]
        if s < len(model.subnets) - 1:
            outputs += [TensorSpec(n, "float32", (-1, c, r, r))
                        for n, (c, r) in zip(state_names(model, s), subnet.chains)]
        specs.append(StageSpec(s, exits, tuple(inputs), tuple(outputs)))
    return specs


class StageGraph(nn.Module):
    """Sub-network ``stage`` with image normalisation, as exported."""

    def __init__(self, model: RANet, stage: int, last: bool) -> None:
        super().__init__()
        self.model, self.stage, self.last = model, stage, last

    def forward(self, image: Tensor, *carried: Tensor) -> tuple[Tensor, ...]:
        x = normalise(image, self.model.cfg.mean, self.model.cfg.std)
        logits, packed = self.model.run_stage(self.stage, x, list(carried) if carried else None)
        return tuple(logits) if self.last else (*logits, *packed)


def export_stages(model: RANet, out: Path) -> list[StageSpec]:
    """Writes ``stage-<s>.onnx`` for every stage into ``out``, each checked by ``onnx.checker``."""
    model = model.eval().cpu()
    specs = stage_specs(model)
    size = model.cfg.image_size
    image = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    carried: list[Tensor] = []
    for spec in specs:
        graph = StageGraph(model, spec.index, last=spec.index == len(specs) - 1).eval()
        names_in = [t.name for t in spec.inputs]
        names_out = [t.name for t in spec.outputs]
        path = out / spec.file
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (image, *carried), str(path), input_names=names_in, output_names=names_out,
                dynamic_axes={n: {0: "batch"} for n in names_in + names_out}, opset_version=OPSET, dynamo=False,
            )
            results = graph(image, *carried)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        carried = list(results[len(spec.exits):])
    return specs


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_version(paths: list[Path]) -> str:
    """First 16 hex digits of SHA-256 over the stage files, in stage order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


class StageRunner:
    """Runs exported stages with onnxruntime, chaining tensors by name as every runtime does."""

    def __init__(self, folder: Path, specs: list[StageSpec], threads: int = 0) -> None:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.specs = specs
        self.sessions = [ort.InferenceSession(str(folder / s.file), opts, providers=["CPUExecutionProvider"])
                         for s in specs]

    def run_stage(self, s: int, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.specs[s]
        outs = self.sessions[s].run([t.name for t in spec.outputs], {t.name: feeds[t.name] for t in spec.inputs})
        return dict(zip([t.name for t in spec.outputs], outs))

    def run(self, images: np.ndarray, first: int = 0, feeds: dict[str, np.ndarray] | None = None,
            last: int | None = None) -> dict[str, np.ndarray]:
        """Every tensor produced by stages first..last (inclusive) for a uint8 batch."""
        tensors = {"image": images, **(feeds or {})}
        end = len(self.specs) - 1 if last is None else last
        for s in range(first, end + 1):
            tensors.update(self.run_stage(s, tensors))
        return tensors

    def logits(self, images: np.ndarray, batch: int = 500) -> np.ndarray:
        """Logits of every exit: [exits, N, classes]."""
        n_exits = sum(len(s.exits) for s in self.specs)
        parts = []
        for i in range(0, len(images), batch):
            t = self.run(images[i : i + batch])
            parts.append(np.stack([t[f"logits{e}"] for e in range(n_exits)]))
        return np.concatenate(parts, axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, as every runtime computes confidences (thresholds compare to it)."""
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
