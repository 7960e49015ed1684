"""The cascade as the split deployment runs it, in-process, from a model directory alone (no PyTorch).

The edge runs stages 0..split-1 and stops at the first exit whose confidence reaches its threshold; every other
frame carries its state, encoded as on the wire, to the cloud stages. This is the reference that other runtimes'
predictions are checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .codec import encode, roundtrip_batch
from .data import Split, read_batch_file


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
    exit_outputs: tuple[str, ...]  # the output holding each of ``exits``' logits

    @property
    def file(self) -> str:
        return f"stage-{self.index}.onnx"


def carried_outputs(specs: list[StageSpec], stage: int) -> list[str]:
    """Outputs of ``stage`` that a later stage reads: its carried state, found by the chaining rule, not by name."""
    later = {t.name for s in specs[stage + 1 :] for t in s.inputs}
    return [t.name for t in specs[stage].outputs if t.name in later]


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
        names = [n for s in self.specs for n in s.exit_outputs]
        parts = []
        for i in range(0, len(images), batch):
            t = self.run(images[i : i + batch])
            parts.append(np.stack([t[n] for n in names]))
        return np.concatenate(parts, axis=1)


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, as every runtime computes confidences (thresholds compare to it)."""
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class ModelDir:
    """A split model directory: its manifest and an onnxruntime runner over its stages."""

    path: Path
    manifest: dict
    runner: StageRunner

    @staticmethod
    def load(path: Path, threads: int = 0) -> ModelDir:
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != "cascade-model/1":
            raise ValueError(f"{path}/manifest.json: format {manifest.get('format')!r} is not cascade-model/1")
        specs = [
            StageSpec(s["index"], tuple(s["exits"]),
                      tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in s["inputs"]),
                      tuple(TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in s["outputs"]),
                      tuple(manifest["exits"][e]["output"] for e in s["exits"]))
            for s in manifest["stages"]
        ]
        return ModelDir(path, manifest, StageRunner(path, specs, threads))

    def thresholds(self, operating_point: str) -> np.ndarray:
        for op in self.manifest["operating_points"]:
            if op["name"] == operating_point:
                return np.array(op["thresholds"], dtype=np.float64)
        names = ", ".join(op["name"] for op in self.manifest["operating_points"])
        raise KeyError(f"operating point {operating_point!r} not in the manifest; it has: {names}")


def run_cascade(model: ModelDir, images: np.ndarray, thresholds: np.ndarray, split: int = 1,
                encoding: str = "int8", batch: int = 500) -> list[dict]:
    """One result per image: exit index, class, confidence, tier (edge or cloud) and offload bytes."""
    specs = model.runner.specs
    if not 1 <= split <= len(specs):
        raise ValueError(f"split {split} out of range 1..{len(specs)}")
    last_exit = len(thresholds) - 1
    state_names = carried_outputs(specs, split - 1)
    results: list[dict] = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        out: list[dict | None] = [None] * len(x)

        def take(tensors: dict, stages: list[StageSpec], rows: np.ndarray, tier: str, nbytes: int) -> None:
            """Assigns every row that leaves at one of ``stages``' exits."""
            open_rows = np.ones(len(rows), dtype=bool)
            for e, name in ((e, n) for s in stages for e, n in zip(s.exits, s.exit_outputs)):
                p = softmax(tensors[name])
                conf, cls = p.max(1), p.argmax(1)
                fire = open_rows & ((conf >= thresholds[e]) | (e == last_exit))
                for j in np.flatnonzero(fire):
                    out[rows[j]] = {"exit": e, "class": int(cls[j]), "confidence": float(conf[j]), "tier": tier,
                                    "bytes": nbytes}
                open_rows &= ~fire

        edge = model.runner.run(x, last=split - 1)
        take(edge, specs[:split], np.arange(len(x)), "edge", 0)
        hard = np.array([j for j, r in enumerate(out) if r is None], dtype=np.int64)
        if len(hard):
            feeds = {n: roundtrip_batch(edge[n][hard], encoding) for n in state_names}
            nbytes = x[0].nbytes + sum(encode(edge[n][hard[0]], encoding).nbytes for n in state_names)
            take(model.runner.run(x[hard], first=split, feeds=feeds), specs[split:], hard, "cloud", nbytes)
        results.extend(r for r in out if r is not None)
    return results


def summarise(results: list[dict], labels: np.ndarray | None, num_exits: int) -> dict:
    frames = len(results)
    offloaded = [r for r in results if r["tier"] == "cloud"]
    summary = {
        "frames": frames,
        "results": frames,
        "offload_rate": len(offloaded) / frames if frames else 0.0,
        "exits": [sum(r["exit"] == e for r in results) for e in range(num_exits)],
        "bytes_per_offload": offloaded[0]["bytes"] if offloaded else 0,
        "bytes_per_frame": sum(r["bytes"] for r in results) / frames if frames else 0.0,
    }
    if labels is not None:
        summary["accuracy"] = float(np.mean([r["class"] == int(y) for r, y in zip(results, labels)]))
    return summary


def load_images(path: Path) -> Split:
    """A CIFAR-10 binary file (raw or .gz) of any number of records."""
    name = path.name.removesuffix(".gz")
    return read_batch_file(path.parent, name, verify=False)
