"""Stage graphs of a config without evaluating them: for throughput measurements on machines without CIFAR-10.

``export_graphs`` writes a model directory a worker can load (stages, exits, MACs, one operating point that sends
every frame to the last exit). Without a checkpoint the weights are random: the directory's ``training.weights``
says so, and its figures are for throughput only. ``throughput`` measures PyTorch eager on the cloud stages.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import get_preset
from .data import class_names
from .export import export_stages, model_version, sha256_file
from .macs import exit_macs, stage_macs
from .model import RANet, normalise
from .train import load_model, versions

NEVER = 2.0  # a threshold above 1 never fires


def build(config: str, checkpoint: Path | None) -> tuple[RANet, str]:
    """The model of ``config`` (or of the checkpoint) and what its weights are."""
    if checkpoint is not None:
        model, _ = load_model(checkpoint)
        return model.eval(), f"trained: {checkpoint.name}"
    torch.manual_seed(0)
    return RANet(get_preset(config).model).eval(), "random (seed 0): throughput only, predictions are meaningless"


def export_graphs(config: str, out: Path, checkpoint: Path | None = None, name: str | None = None) -> dict:
    """Writes ``out/stage-*.onnx`` and a manifest; returns the manifest."""
    model, weights = build(config, checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    specs = export_stages(model, out)
    files = [out / s.file for s in specs]
    cfg, emacs, smacs = model.cfg, exit_macs(model), stage_macs(model)
    n_exits = len(emacs)
    manifest = {
        "format": "cascade-model/1",
        "name": name or f"ranet-{config}",
        "version": model_version(files),
        "input": {"name": "image", "dtype": "uint8", "shape": [3, cfg.image_size, cfg.image_size], "layout": "NCHW",
                  "mean": list(cfg.mean), "std": list(cfg.std)},
        "classes": class_names(Path("/nonexistent")),
        "stages": [
            {"index": s.index, "file": s.file, "sha256": sha256_file(f), "macs": smacs[s.index], "exits": list(s.exits),
             "inputs": [t.to_json() for t in s.inputs], "outputs": [t.to_json() for t in s.outputs]}
            for s, f in zip(specs, files)
        ],
        "exits": [{"index": e, "stage": s.index, "output": o, "macs": emacs[e]}
                  for s in specs for e, o in zip(s.exits, s.exit_outputs)],
        "operating_points": [{"name": "last-exit", "thresholds": [NEVER] * (n_exits - 1) + [0.0], "val_accuracy": 0.0,
                              "expected_macs": emacs[-1], "edge_exit_rate": 0.0}],
        "default_operating_point": "last-exit",
        "default_split": 1,
        "training": {"config": config, "weights": weights, "versions": versions()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def throughput(config: str, batches: list[int], first_stage: int = 1, device: str = "cuda", dtype: str = "bf16",
               seconds: float = 3.0, checkpoint: Path | None = None, log=print) -> list[dict]:
    """Samples per second of PyTorch eager through stages ``first_stage``.. (the cloud's part) at each batch size.

    The carried state comes from running the earlier stages once per batch size, outside the timing. bf16 runs
    under autocast, channels-last; every timed call ends with a device synchronisation.
    """
    model, _ = build(config, checkpoint)
    dev = torch.device(device)
    model = model.to(dev).to(memory_format=torch.channels_last)
    cast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    size = model.cfg.image_size
    out = []
    for b in batches:
        images = torch.randint(0, 256, (b, 3, size, size), dtype=torch.uint8, device=dev)
        with torch.no_grad(), cast:
            x = normalise(images, model.cfg.mean, model.cfg.std).contiguous(memory_format=torch.channels_last)
            carried = None
            for s in range(first_stage):
                _, carried = model.run_stage(s, x, carried)

            def cloud() -> None:
                c = carried
                for s in range(first_stage, len(model.subnets)):
                    _, c = model.run_stage(s, x, c)

            for _ in range(3):
                cloud()
            sync()
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                cloud()
                n += 1
            sync()
            rate = n * b / (time.perf_counter() - t0)
        out.append({"batch": b, "samples_per_second": round(rate, 1), "calls": n})
        log(f"pytorch {device} {dtype} batch {b}: {rate:.0f} samples/s")
    return out
