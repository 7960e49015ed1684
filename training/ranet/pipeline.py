"""From a checkpoint to a split model directory, in steps: export (with a parity check), evaluate, calibrate, study
the wire encodings, build the manifest, write the report.

Every number in the manifest is measured on the exported ONNX stages through onnxruntime, the same graphs the
edge and cloud run. Thresholds come from the validation split; the test split is used for reporting only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import paper
from .calibrate import budgeted_curve, evaluate_thresholds, operating_points
from .cascade import StageRunner, StageSpec, softmax
from .config import to_dict
from .data import VAL_SEED, VAL_SIZE, Split, class_names, data_root, load_cifar10
from .export import export_stages, model_version, sha256_file
from .macs import count_params, exit_macs, stage_macs
from .model import RANet, normalise
from .plots import accuracy_vs_macs, training_curve
from .quant import payload_bytes, split_study
from .train import load_model, save_checkpoint, versions

FORMAT = "cascade-model/1"
PARITY_TOLERANCE = 1e-4


def parity(model: RANet, runner: StageRunner, images: np.ndarray) -> float:
    """Largest |logit difference| between PyTorch (monolithic, fp32) and the chained ONNX stages."""
    with torch.no_grad():
        ref = torch.stack(model(normalise(torch.from_numpy(images), model.cfg.mean, model.cfg.std))).numpy()
    return float(np.abs(runner.logits(images) - ref).max())


@dataclass
class Evaluation:
    """What the exported stages give on validation and test: logits, probabilities, accuracy per exit."""

    val: Split
    test: Split
    val_logits: np.ndarray
    test_logits: np.ndarray
    val_acc: list[float]
    test_acc: list[float]

    @property
    def val_probs(self) -> np.ndarray:
        return softmax(self.val_logits)

    @property
    def test_probs(self) -> np.ndarray:
        return softmax(self.test_logits)


def export(model: RANet, out: Path, check_images: np.ndarray, log=print) -> tuple[list[StageSpec], StageRunner, float]:
    """Step 1: the stage graphs in ``out``, and their parity with PyTorch (refused above PARITY_TOLERANCE)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("stage-*.onnx"):
        old.unlink()
    specs = export_stages(model, out)
    log(f"exported {len(specs)} stages to {out}")
    runner = StageRunner(out, specs)
    max_diff = parity(model, runner, check_images)
    log(f"parity PyTorch vs onnxruntime on {len(check_images)} test images: max |dlogit| = {max_diff:.2e}")
    if max_diff > PARITY_TOLERANCE:
        raise RuntimeError(f"exported stages differ from PyTorch by {max_diff:.2e} > {PARITY_TOLERANCE}")
    return specs, runner, max_diff


def accuracy(logits: np.ndarray, labels: np.ndarray) -> list[float]:
    """Top-1 accuracy of each exit's logits [exits, N, classes]."""
    return [float((z.argmax(1) == labels).mean()) for z in logits]


def evaluate(runner: StageRunner, val: Split, test: Split, log=print) -> Evaluation:
    """Step 2: every exit's logits on validation and test, through onnxruntime."""
    log("running the exported stages over validation and test ...")
    val_logits, test_logits = runner.logits(val.images), runner.logits(test.images)
    val_acc, test_acc = accuracy(val_logits, val.labels), accuracy(test_logits, test.labels)
    ev = Evaluation(val, test, val_logits, test_logits, val_acc, test_acc)
    log("test accuracy per exit: " + " / ".join(f"{a * 100:.2f}" for a in ev.test_acc))
    return ev


def calibrate(ev: Evaluation, emacs: list[int], edge_exits: int, log=print) -> tuple[list[dict], list[dict]]:
    """Step 3: the budgeted curve and the named operating points from validation, each measured on test."""
    val_probs, test_probs = ev.val_probs, ev.test_probs
    budgeted = budgeted_curve(val_probs, ev.val.labels, test_probs, ev.test.labels, emacs)
    ops = operating_points(val_probs, ev.val.labels, emacs, edge_exits=edge_exits)
    for op in ops:
        t = evaluate_thresholds(test_probs, ev.test.labels, np.array(op["thresholds"]), emacs)
        op["test"] = {"accuracy": t.accuracy, "expected_macs": t.expected_macs,
                      "edge_exit_rate": t.edge_exit_rate(edge_exits), "exit_fractions": t.exit_fractions}
        log(f"operating point {op['name']}: val {op['val_accuracy'] * 100:.2f} % at {op['expected_macs'] / 1e6:.2f}"
            f" MMACs (edge exit rate {op['edge_exit_rate'] * 100:.1f} %), test {t.accuracy * 100:.2f} % at"
            f" {t.expected_macs / 1e6:.2f} MMACs (edge exit rate {op['test']['edge_exit_rate'] * 100:.1f} %)")
    return budgeted, ops


def quantization_study(runner: StageRunner, specs: list[StageSpec], ev: Evaluation, ops: list[dict], log=print) -> dict:
    """Step 4: what fp16 and int8 carried state change, at every split, on the test set."""
    log("quantisation study (fp16 and int8 carried state) ...")
    image_bytes = int(np.prod(specs[0].inputs[0].shape[1:]))
    balanced = np.array(next(op for op in ops if op["name"] == "balanced")["thresholds"])
    return {
        "scheme": "per-sample per-channel affine int8 (float32 scale + int8 zero point per channel); fp16 IEEE; "
                  "see training/ranet/codec.py",
        "operating_point": "balanced",
        "splits": [
            {**split_study(runner, ev.test.images, ev.test.labels, k, ev.test_logits, balanced),
             "bytes_per_offload": payload_bytes(specs, k - 1, image_bytes)}
            for k in range(1, len(specs))
        ],
    }


def build_manifest(model: RANet, ckpt: dict, out: Path, name: str, specs: list[StageSpec], classes: list[str],
                   ev: Evaluation, budgeted: list[dict], ops: list[dict], quant: dict, max_diff: float) -> dict:
    """Step 5: the manifest (models/manifest.schema.json), every figure in it measured above."""
    files = [out / s.file for s in specs]
    cfg = model.cfg
    emacs, smacs = exit_macs(model), stage_macs(model)
    return {
        "format": FORMAT,
        "name": name,
        "version": model_version(files),
        "architecture": {"family": "RANet", "config": to_dict(cfg), "params": count_params(model)},
        "input": {"name": "image", "dtype": "uint8", "shape": [3, cfg.image_size, cfg.image_size], "layout": "NCHW",
                  "mean": list(cfg.mean), "std": list(cfg.std), "scale": "pixels / 255, then (x - mean) / std"},
        "classes": classes,
        "stages": [
            {"index": s.index, "file": s.file, "sha256": sha256_file(f), "macs": smacs[s.index],
             "exits": list(s.exits), "inputs": [t.to_json() for t in s.inputs],
             "outputs": [t.to_json() for t in s.outputs]}
            for s, f in zip(specs, files)
        ],
        "exits": [{"index": e, "stage": s.index, "output": o, "macs": emacs[e]}
                  for s in specs for e, o in zip(s.exits, s.exit_outputs)],
        "operating_points": [
            {k: op[k] for k in ("name", "thresholds", "val_accuracy", "expected_macs", "edge_exit_rate",
                                "exit_fractions", "max_drop", "q", "test")}
            for op in ops
        ],
        "default_operating_point": "balanced",
        "default_split": 1,
        "thresholds_note": "max-softmax confidence; a frame leaves at the first exit whose confidence >= threshold;"
                           " a threshold above 1 never fires; edge_exit_rate assumes the default split",
        "eval": {
            "test": {"samples": len(ev.test), "accuracy": ev.test_acc},
            "val": {"samples": len(ev.val), "accuracy": ev.val_acc, "split": f"{VAL_SIZE} of the training set, "
                    f"numpy default_rng({VAL_SEED}).permutation"},
            "budgeted": [{"avg_macs": p["avg_macs"], "accuracy": p["accuracy"], "q": p["q"]} for p in budgeted],
            "parity_max_abs_logit_diff": max_diff,
            "quantization": quant,
        },
        "training": {
            "config": {"model": ckpt["model_config"], "train": ckpt["train_config"]},
            "epochs": ckpt["epoch"], "device": ckpt["device"], "wall_seconds": round(ckpt["wall_seconds"], 1),
            "versions": ckpt["versions"], "export_versions": versions(),
            "data_source": ckpt.get("data_source", "cifar-10 binary batches (exact)"),
            "weights": ckpt.get("weights", "raw"),
            **({"budget": ckpt["budget"]} if "budget" in ckpt else {}),
        },
    }


def write_report(out: Path, model: RANet, ckpt: dict, manifest: dict, budgeted: list[dict]) -> None:
    """Step 6: manifest.json, weights.pt, report.json, report.md and the plots."""
    slim = {k: ckpt[k] for k in ("model", "model_config", "train_config", "epoch", "wall_seconds", "history", "device",
                                 "versions", "data_source", "weights", "budget") if k in ckpt}
    save_checkpoint(out / "weights.pt", slim)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    report = {"manifest": manifest, "budgeted_full": budgeted, "history": ckpt["history"]}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    test_acc = manifest["eval"]["test"]["accuracy"]
    accuracy_vs_macs(out / "accuracy_vs_macs.png", model.cfg.name, exit_macs(model), test_acc, budgeted,
                     manifest["operating_points"])
    training_curve(out / "training.png", ckpt["history"])
    (out / "report.md").write_text(render_report(manifest))


def export_model_dir(checkpoint: Path, out: Path, data: str | None = None, name: str = "ranet-cifar10",
                     log=print, limit: int | None = None) -> dict:
    """Writes ``out/`` (stages, weights.pt, manifest.json, report.json, report.md, plots) and returns the manifest.

    Args:
        limit: evaluate on only the first ``limit`` validation and test images (for quick checks).
    """
    t0 = time.time()
    model, ckpt = load_model(checkpoint)
    model.eval()
    root = data_root(data)
    splits = load_cifar10(root)
    val, test = splits["val"], splits["test"]
    if limit:
        val, test = (Split(s.images[:limit], s.labels[:limit]) for s in (val, test))
    specs, runner, max_diff = export(model, out, test.images[:256], log)
    ev = evaluate(runner, val, test, log)
    budgeted, ops = calibrate(ev, exit_macs(model), edge_exits=len(specs[0].exits), log=log)
    quant = quantization_study(runner, specs, ev, ops, log)
    manifest = build_manifest(model, ckpt, out, name, specs, class_names(root), ev, budgeted, ops, quant, max_diff)
    write_report(out, model, ckpt, manifest, budgeted)
    log(f"model directory {out} written in {time.time() - t0:.0f} s (version {manifest['version']})")
    return manifest


def _duration(tr: dict) -> str:
    steps = f"{tr['wall_seconds'] / 60:.1f} min" if tr["wall_seconds"] >= 600 else f"{tr['wall_seconds']:.0f} s"
    budget = tr.get("budget")
    if not budget:
        return steps
    return f"{steps} of training steps inside a {budget['seconds']:.0f} s budget ({budget['step']} step)"


def render_report(m: dict) -> str:
    """A Markdown summary of a manifest: per exit beside the paper, budgeted curve, operating points, encodings."""
    cfg = m["architecture"]["config"]
    tr = m["training"]
    lines = [
        f"# {m['name']} ({cfg['name']}), version {m['version']}", "",
        f"{m['architecture']['params'] / 1e6:.3f} M parameters, {len(m['exits'])} exits in {len(m['stages'])} stages."
        f" Trained {tr['epochs']} epochs on {tr['device']} in {_duration(tr)} (torch {tr['versions']['torch']}),"
        f" from {tr.get('data_source', 'the CIFAR-10 binary batches')}; shipped weights: "
        f"{'the moving average of the weights' if tr.get('weights') == 'ema' else 'the final weights'}."
        " All figures: exported ONNX stages through onnxruntime (CPU), CIFAR-10 (exact files).",
        "", "![accuracy vs MACs](accuracy_vs_macs.png)", "",
        "## Anytime accuracy per exit (test, 10,000 images)", "",
        "| exit | stage | cumulative MMACs | test top-1 % | paper MMACs | paper top-1 % |", "|---|---|---|---|---|---|",
    ]
    for e, acc in zip(m["exits"], m["eval"]["test"]["accuracy"]):
        i = e["index"]
        ref = (f"{paper.ANYTIME_MMACS[i]} | {paper.ANYTIME_ACC[i]}" if i < len(paper.ANYTIME_MMACS) else "- | -")
        lines.append(f"| {i + 1} | {e['stage']} | {e['macs'] / 1e6:.2f} | {acc * 100:.2f} | {ref} |")
    lines += ["", "## Operating points (thresholds from validation)", "",
              "| name | max drop vs last exit (val) | val top-1 % | test top-1 % | expected MMACs (test) |"
              " edge exit rate (test, split 1) |", "|---|---|---|---|---|---|"]
    for op in m["operating_points"]:
        lines.append(f"| {op['name']} | {op['max_drop'] * 100:.2f} pt | {op['val_accuracy'] * 100:.2f} |"
                     f" {op['test']['accuracy'] * 100:.2f} | {op['test']['expected_macs'] / 1e6:.2f} |"
                     f" {op['test']['edge_exit_rate'] * 100:.1f} % |")
    lines += ["", "## Budgeted batch classification (test)", "",
              "| q | avg MMACs | test top-1 % |", "|---|---|---|"]
    for p in m["eval"]["budgeted"][::4]:
        lines.append(f"| {p['q']:.2f} | {p['avg_macs'] / 1e6:.2f} | {p['accuracy'] * 100:.2f} |")
    lines += ["", "## Carried-state encodings (test set)", "",
              "| split (edge stages) | encoding | bytes per offload | images whose top-1 changed, per cloud exit |"
              " cascade top-1 % at `balanced` (fp32 → encoded) |", "|---|---|---|---|---|"]
    for s in m["eval"]["quantization"]["splits"]:
        b = s["bytes_per_offload"]
        lines.append(f"| {s['split']} | fp32 | {b['state_fp32']:,} | - | - |")
        for enc in ("fp16", "int8"):
            q = s["encodings"][enc]
            changed = ", ".join(f"exit {int(e) + 1}: {n}" for e, n in q["changed_top1"].items())
            lines.append(f"| {s['split']} | {enc} | {b['state_' + enc]:,} | {changed} |"
                         f" {q['cascade_accuracy_fp32'] * 100:.2f} → {q['cascade_accuracy'] * 100:.2f} |")
        lines.append(f"| {s['split']} | image only | {b['image']:,} | (cloud recomputes the edge stages) | - |")
    lines += ["", f"PyTorch vs onnxruntime parity: max |Δlogit| = {m['eval']['parity_max_abs_logit_diff']:.1e}.", ""]
    return "\n".join(lines)
