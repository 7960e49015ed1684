"""Command line: ``python -m ranet {macs,train,train-budget,export,graphs,throughput,fuse,cascade,flip,golden}
...`` (from ``training/``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .config import PRESETS, get_preset

STARTED = time.time()  # the budgeted trainer's clock: everything heavy (torch, data) is loaded after this

REPO = Path(__file__).resolve().parents[2]
GOLDEN_PATH = REPO / "packages" / "proto" / "testdata" / "codec-golden.json"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_macs(args: argparse.Namespace) -> None:
    from .macs import count_params, exit_macs, stage_macs
    from .model import RANet

    model = RANet(get_preset(args.config).model).eval()
    print(json.dumps({
        "config": args.config, "params": count_params(model),
        "exit_macs": exit_macs(model), "stage_macs": stage_macs(model),
    }, indent=1))


def cmd_train(args: argparse.Namespace) -> None:
    from .data import data_root, load_cifar10
    from .train import Device, train

    preset = get_preset(args.config)
    tc = preset.train
    if args.epochs is not None:
        tc = dataclasses.replace(tc, epochs=args.epochs)
    dev = Device.pick(args.device)
    _log(f"training {args.config} on {dev.describe()} for {tc.epochs} epochs into {args.out}")
    data = load_cifar10(data_root(args.data))
    summary = train(preset.model, tc, data, Path(args.out), dev, log=_log, stop_after=args.stop_after)
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))


def cmd_train_budget(args: argparse.Namespace) -> None:
    from .budget import Clock, train_budgeted
    from .data import data_root, load_train_val
    from .train import Device

    preset = get_preset(args.config)
    overrides = {k: getattr(args, k) for k in ("batch_size", "lr", "distill", "ema") if getattr(args, k) is not None}
    tc = dataclasses.replace(preset.budget_recipe, **overrides)
    dev = Device.pick(args.device)
    clock = Clock(args.budget_seconds, STARTED)
    data, source = load_train_val(data_root(args.data), Path(args.data_jpeg) if args.data_jpeg else None)
    _log(f"train-budget {args.config} on {dev.describe()}, {args.budget_seconds:.0f} s from process start "
         f"({clock.elapsed():.1f} s gone), data: {source}; recipe {json.dumps(dataclasses.asdict(tc))}")
    summary = train_budgeted(preset.model, tc, data, Path(args.out), dev, clock, source, graphs=not args.no_graphs,
                             resume=Path(args.resume) if args.resume else None, log=_log)
    print(json.dumps(summary))


def cmd_export(args: argparse.Namespace) -> None:
    from .pipeline import export_model_dir

    export_model_dir(Path(args.checkpoint), Path(args.out), args.data, name=args.name, log=_log, limit=args.limit)


def cmd_graphs(args: argparse.Namespace) -> None:
    from .graphs import export_graphs

    ckpt = Path(args.checkpoint) if args.checkpoint else None
    m = export_graphs(args.config, Path(args.out), ckpt, name=args.name)
    _log(f"wrote {args.out}: {m['name']} {m['version']}, {len(m['stages'])} stages, weights {m['training']['weights']}")


def cmd_throughput(args: argparse.Namespace) -> None:
    from .graphs import throughput

    ckpt = Path(args.checkpoint) if args.checkpoint else None
    batches = [int(b) for b in args.batches.split(",")]
    rows = throughput(args.config, batches, args.first_stage, args.device, args.dtype, args.seconds, ckpt, log=_log)
    print(json.dumps({"config": args.config, "device": args.device, "dtype": args.dtype,
                      "first_stage": args.first_stage, "rows": rows}))


def cmd_fuse(args: argparse.Namespace) -> None:
    from .export import export_fused
    from .train import load_model

    model, _ = load_model(Path(args.checkpoint))
    outputs = export_fused(model, Path(args.out), args.first_stage)
    _log(f"wrote {args.out}: stages {args.first_stage}.. as one graph, outputs {', '.join(outputs)}")


def cmd_flip(args: argparse.Namespace) -> None:
    from .cascade import ModelDir, softmax
    from .data import TEST_FILES, data_root, load_files

    model = ModelDir.load(Path(args.model))
    test = load_files(data_root(args.data), TEST_FILES)
    plain = softmax(model.runner.logits(test.images))
    flipped = softmax(model.runner.logits(test.images[..., ::-1].copy()))
    acc = lambda p: [round(float((q.argmax(1) == test.labels).mean()), 4) for q in p]  # noqa: E731
    print(json.dumps({"model": model.manifest["name"], "version": model.manifest["version"], "images": len(test),
                      "accuracy": acc(plain), "flip_averaged_accuracy": acc(plain + flipped)}))


def cmd_golden(args: argparse.Namespace) -> None:
    from .codec import golden_vectors

    Path(args.out).write_text(json.dumps(golden_vectors(), indent=1) + "\n")
    _log(f"wrote {args.out}")


def cmd_cascade(args: argparse.Namespace) -> None:
    from .cascade import ModelDir, load_images, run_cascade, summarise

    model = ModelDir.load(Path(args.model))
    op = args.operating_point or model.manifest.get("default_operating_point", "balanced")
    data = load_images(Path(args.images))
    results = run_cascade(model, data.images, model.thresholds(op), split=args.split, encoding=args.encoding)
    if args.predictions:
        with open(args.predictions, "w") as f:
            rows = enumerate(zip(results, data.labels))
            f.writelines(json.dumps({"index": i, "label": int(y), **r}) + "\n" for i, (r, y) in rows)
    summary = {"model": model.manifest["name"], "version": model.manifest["version"], "operating_point": op,
               "split": args.split, "encoding": args.encoding,
               **summarise(results, data.labels, len(model.manifest["exits"]))}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{summary['model']} {summary['version']}  operating point {op}  split {args.split}  {args.encoding}")
    print(f"frames {summary['frames']}  accuracy {summary['accuracy'] * 100:.2f} %  "
          f"offload rate {summary['offload_rate'] * 100:.1f} %  bytes/offload {summary['bytes_per_offload']:,}  "
          f"bytes/frame {summary['bytes_per_frame']:,.0f}")
    print("exits: " + "  ".join(f"{e + 1}:{n}" for e, n in enumerate(summary["exits"])))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ranet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("macs", help="parameters and cumulative MACs per exit of a config")
    p.add_argument("--config", default="cifar10-paper", choices=sorted(PRESETS))
    p.set_defaults(fn=cmd_macs)

    p = sub.add_parser("train", help="train a config on CIFAR-10 (resumes from OUT/last.pt)")
    p.add_argument("--config", required=True, choices=sorted(PRESETS))
    p.add_argument("--out", required=True, help="run folder for checkpoints")
    p.add_argument("--data", help="CIFAR-10 folder (default: $CASCADE_DATA or ../shared/data/cifar-10)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--stop-after", type=int, help="stop after N epochs in this call; run again to resume")
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("train-budget", help="train inside a wall-clock budget (GPU: CUDA-graph steps), fitting a "
                                            "one-cycle schedule to the time; checkpoints into OUT after every epoch")
    p.add_argument("--config", required=True, choices=sorted(PRESETS))
    p.add_argument("--budget-seconds", type=float, required=True, help="wall-clock seconds from process start")
    p.add_argument("--out", required=True, help="folder for model.pt, resume.pt and ema.pt")
    p.add_argument("--data", help="CIFAR-10 folder (default: $CASCADE_DATA or ../shared/data/cifar-10)")
    p.add_argument("--data-jpeg", help="read the training set from this cifar-10-train-jpeg folder instead")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--resume", help="an earlier run's folder, or a checkpoint file (model.pt, a model directory's "
                                    "weights.pt): continue from its weights")
    p.add_argument("--no-graphs", action="store_true", help="run every step eagerly, also on CUDA")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's peak learning rate")
    p.add_argument("--distill", type=float, help="override the recipe's distillation weight")
    p.add_argument("--ema", type=float, help="override the recipe's weight-average decay (0: none)")
    p.set_defaults(fn=cmd_train_budget)

    p = sub.add_parser("export", help="evaluate, calibrate and export a checkpoint as a split model directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model directory to write, e.g. ../models/ranet-cifar10")
    p.add_argument("--name", default="ranet-cifar10")
    p.add_argument("--data", help="CIFAR-10 folder (default: $CASCADE_DATA or ../shared/data/cifar-10)")
    p.add_argument("--limit", type=int, help="evaluate on the first N validation and test images only")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("graphs", help="export a config's stage graphs and a manifest, without data (random weights"
                                      " unless --checkpoint): for throughput measurements")
    p.add_argument("--config", default="cifar10-paper", choices=sorted(PRESETS))
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", help="trained weights (default: random, labelled as such in the manifest)")
    p.add_argument("--name", help="model name (default ranet-<config>)")
    p.set_defaults(fn=cmd_graphs)

    p = sub.add_parser("throughput", help="PyTorch eager samples/s of the cloud stages at each batch size")
    p.add_argument("--config", default="cifar10-paper", choices=sorted(PRESETS))
    p.add_argument("--checkpoint")
    p.add_argument("--batches", default="1,8,32,128,256,512,1024")
    p.add_argument("--first-stage", type=int, default=1)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--seconds", type=float, default=3.0)
    p.set_defaults(fn=cmd_throughput)

    p = sub.add_parser("fuse", help="export the cloud stages (--first-stage on) as one ONNX graph, for measurements")
    p.add_argument("--checkpoint", default=str(REPO / "models" / "ranet-cifar10" / "weights.pt"))
    p.add_argument("--first-stage", type=int, default=1)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_fuse)

    p = sub.add_parser("cascade", help="run the split cascade in-process on a model directory (reference results)")
    p.add_argument("--model", default=str(REPO / "models" / "ranet-cifar10"))
    p.add_argument("--images", default=str(REPO / "samples" / "cifar10-test-1000.bin"),
                   help="CIFAR-10 binary file (raw or .gz)")
    p.add_argument("--operating-point", help="threshold set from the manifest (default: the manifest's default)")
    p.add_argument("--split", type=int, default=1, help="stages run on the edge")
    p.add_argument("--encoding", default="int8", choices=["fp32", "fp16", "int8"])
    p.add_argument("--predictions", help="write one JSON line per image here")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(fn=cmd_cascade)

    p = sub.add_parser("flip", help="per-exit test accuracy with and without averaging each image with its mirror "
                                    "(test-time flip; the cascade does not use it)")
    p.add_argument("--model", default=str(REPO / "models" / "ranet-cifar10"))
    p.add_argument("--data", help="CIFAR-10 folder (default: $CASCADE_DATA or ../shared/data/cifar-10)")
    p.set_defaults(fn=cmd_flip)

    p = sub.add_parser("golden", help="write the codec golden vectors other runtimes test against")
    p.add_argument("--out", default=str(GOLDEN_PATH))
    p.set_defaults(fn=cmd_golden)

    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
