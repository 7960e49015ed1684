"""One report from the GPU machine's result folders (scripts/gpu-run's results.tgz, unpacked; the fused-graph
comparison's JSON files): ``python bench/gpu_report.py OUT_STEM DIR [DIR ...]`` writes OUT_STEM.json, .md and .png.
A file found in a later folder replaces the same-named one of an earlier folder (a step run again)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MODELS = {"paper": "ranet-cifar10 (cifar10-paper config, the default model)", "small": "ranet-cifar10-small"}


def collect(dirs: list[Path]) -> dict:
    found: dict[str, Path] = {}
    for d in dirs:
        for f in list(d.glob("*.json")) + list(d.glob("profile/profile-*-b*.json")) + list(d.glob("machine.md")):
            found[f.name] = f
    r: dict = {"machine": found["machine.md"].read_text() if "machine.md" in found else "", "models": {}}
    for key in MODELS:
        m: dict = {}
        for kind in ("webgpu", "webgpu-stages", "cpu", "torch"):
            if f"{key}-{kind}.json" in found:
                m[kind] = json.loads(found[f"{key}-{kind}.json"].read_text())
        r["models"][key] = m
    r["profile"] = [json.loads(found[n].read_text()) for n in sorted(found) if n.startswith("profile-")]
    r["fused"] = {n[len("fused-"):-len(".json")]: json.loads(found[n].read_text())
                  for n in sorted(found) if n.startswith("fused-")}
    return r


def worker_rows(run: dict) -> list[dict]:
    return run.get("throughput", [])


def torch_at(run: dict | None, batch: int) -> float | None:
    rows = [x for x in (run or {}).get("rows", []) if x["batch"] == batch]
    return rows[0]["samples_per_second"] if rows else None


def markdown(r: dict) -> str:
    machine = "\n".join(ln.replace("# GPU run", "Run at") for ln in r["machine"].strip().splitlines())
    out = ["# GPU workers: measured on the GPU machine", "", machine, ""]
    for key, title in MODELS.items():
        m = r["models"][key]
        if not m:
            continue
        out += [f"## {title}", ""]
        intro = (
            "Offloaded frames per second through a worker (NATS, decode, batching, inference) by the worker's "
            "largest batch; the bare graphs are the same stages on the same provider in one process, without the "
            "worker; PyTorch eager bf16 runs the same cloud stages on the same GPU (random weights)."
        )
        stages = {x["max_batch"]: x for x in worker_rows(m.get("webgpu-stages", {}))}
        if m.get("webgpu", {}).get("one_graph"):
            intro += (
                " The WebGPU worker runs the cloud stages as one graph (`--fuse`, the default on a GPU)"
                + ("; the last two columns are the same worker with one graph per stage (`--fuse off`)." if stages else ".")
            )
        head = "| max batch | worker, WebGPU | bare graphs, WebGPU | in onnxruntime | worker, CPU (16 threads) "
        head += "| PyTorch eager bf16 | worker WebGPU / PyTorch |"
        rule = "|---|---|---|---|---|---|---|"
        if stages:
            head += " worker, WebGPU, a graph per stage | bare, a graph per stage |"
            rule += "---|---|"
        out += [intro, "", head, rule]
        cpu = {x["max_batch"]: x for x in worker_rows(m.get("cpu", {}))}
        for row in worker_rows(m.get("webgpu", {})):
            b = row["max_batch"]
            t = torch_at(m.get("torch"), b)
            graph = row["graph"].get("frames_per_second", "failed")
            c = cpu.get(b, {}).get("frames_per_second", "")
            ratio = f"{row['frames_per_second'] / t * 100:.1f} %" if t else ""
            line = f"| {b} | {row['frames_per_second']} | {graph} | {row['compute_busy'] * 100:.0f} % | {c} | "
            line += f"{t if t is not None else ''} | {ratio} |"
            if stages:
                st = stages.get(b)
                line += f" {st['frames_per_second']} | {st['graph'].get('frames_per_second', '')} |" if st else " | |"
            out.append(line)
        for kind, name in (("webgpu", "WebGPU"), ("cpu", "CPU")):
            ol = m.get(kind, {}).get("open_loop", [])
            if ol:
                best = m[kind]["best"]
                out += ["", (f"Open-loop latency, worker on {name} at its best max batch ({best['max_batch']}, "
                        f"{best['frames_per_second']} frames/s), Poisson arrivals:"), "",
                        "| load | offered/s | completed | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|"]
                out += [f"| {o['load'] * 100:.0f} % | {o['offered_per_second']} | {o['completed']} | "
                        f"{o['latency_ms']['p50']} | {o['latency_ms']['p99']} |" for o in ol]
        out.append("")
    if r["profile"]:
        out += ["## Where the time goes (onnxruntime profiler, WebGPU timestamps)", "",
                ("Stages 1-3 of the default model, one session each, 3 warm-up and 5 timed runs; GPU time is the sum "
                "of the provider's kernel timings. The profiler itself slows the runs (at batch 1 the three stages "
                "take 85 ms profiled, 31 ms without it)."), "",
                "| batch | stage | wall per run (ms) | GPU kernels per run (ms) | top kernels (ms per run) |",
                "|---|---|---|---|---|"]
        for p in r["profile"]:
            for s in p["stages"]:
                top = ", ".join(f"{k} {v['ms_per_run']}" for k, v in list(s["gpu_by_program"].items())[:4])
                out.append(f"| {p['batch']} | {s['stage']} | {s['ms_per_run']} | {s['gpu_ms_per_run']} | {top} |")
        out.append("")
    for ep, f in r["fused"].items():
        out += [f"## Cloud stages as one graph ({ep})", "",
                ("Bare onnxruntime-node: stages 1-3 as three graphs (every carried state back to the host between "
                "them, as the worker runs them) against the same stages fused into one graph."), "",
                "| batch | three graphs (frames/s) | one graph (frames/s) | speed-up |", "|---|---|---|---|"]
        out += [f"| {x['batch']} | {x['stages']['frames_per_second']} | {x['fused']['frames_per_second']} | "
                f"{x['speedup']}x |" for x in f["rows"]]
        out.append("")
    return "\n".join(out)


def plot(r: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, (key, title) in zip(axes, MODELS.items()):
        m = r["models"][key]
        rows = worker_rows(m.get("webgpu", {}))
        if rows:
            fps = [x["frames_per_second"] for x in rows]
            how = "one graph" if m["webgpu"].get("one_graph") else "a graph per stage"
            ax.plot([x["max_batch"] for x in rows], fps, "o-", label=f"worker, WebGPU, {how}")
            g = [(x["max_batch"], x["graph"]["frames_per_second"]) for x in rows if "frames_per_second" in x["graph"]]
            ax.plot(*zip(*g), "s--", label=f"bare, WebGPU, {how}")
        st = worker_rows(m.get("webgpu-stages", {}))
        if st:
            fps = [x["frames_per_second"] for x in st]
            ax.plot([x["max_batch"] for x in st], fps, "o-", color="tab:grey", label="worker, WebGPU, a graph per stage")
        cpu = worker_rows(m.get("cpu", {}))
        if cpu:
            ax.plot([x["max_batch"] for x in cpu], [x["frames_per_second"] for x in cpu], "o-", label="worker, CPU")
        if m.get("torch"):
            t = m["torch"]["rows"]
            ax.plot([x["batch"] for x in t], [x["samples_per_second"] for x in t], "^-", label="PyTorch eager bf16")
        if key == "paper" and "webgpu" in r["fused"]:
            f = r["fused"]["webgpu"]["rows"]
            ax.plot([x["batch"] for x in f], [x["fused"]["frames_per_second"] for x in f], "D:",
                    label="bare, one graph (fused-vs-stages)")
        if key == "paper":
            ax.axhline(5000, color="grey", linestyle=":", label="goal: 5,000 frames/s")
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="cloud frames per second", title=title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    gpu = next((ln for ln in r["machine"].splitlines() if "NVIDIA" in ln and "," in ln), "GPU")
    fig.suptitle(f"{gpu.strip()}; onnxruntime-node 1.30 (WebGPU over Vulkan), 16 cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(stem: str, dirs: list[str]) -> None:
    r = collect([Path(d) for d in dirs])
    Path(f"{stem}.json").write_text(json.dumps(r, indent=1) + "\n")
    Path(f"{stem}.md").write_text(markdown(r) + "\n")
    plot(r, Path(f"{stem}.png"))
    print(f"wrote {stem}.json, .md and .png")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
