"""Plots of benchmark results (python bench/plot.py [latest.json | soak.json]); PNGs go beside the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def soak(r: dict, out: Path) -> None:
    """Resident memory of each process against frames done (soak.json -> soak-rss.png)."""
    frames = [s["frames"] for s in r["samples"]]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for name in r["samples"][0]["rss_mib"]:
        growth = r["growth_mib_per_100k_frames"].get(name)
        label = f"{name} ({growth:+.2f} MiB per 100k frames)" if growth is not None else name
        ax.plot(frames, [s["rss_mib"][name] for s in r["samples"]], label=label)
    ax.axvline(r["warmup_frames"], color="grey", linestyle=":", label="end of warm-up")
    ax.set(xlabel="frames through the edge", ylabel="resident memory (MiB)",
           title=f"soak: {r['minutes']} min at {r['achieved_fps']} frames/s")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{r['machine']['cpu']}, {r['machine']['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "soak-rss.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'soak-rss.png'}")


def main(path: Path) -> None:
    r = json.loads(path.read_text())
    out = path.parent
    if "samples" in r:
        soak(r, out)
        return
    machine = f"{r['machine']['cpu']}, {r['machine']['cores']} cores"

    cascade = [c for c in r["cascade"] if c["kind"] != "wire format"]
    cloud = next(c for c in cascade if c["kind"] == "all-cloud")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c in cascade:
        share = c["cloud_cpu_seconds_per_frame"] / cloud["cloud_cpu_seconds_per_frame"] * 100
        a.plot(share, c["accuracy"] * 100, "o", color="tab:red" if c["kind"] != "operating point" else "tab:blue")
        a.annotate(c["name"], (share, c["accuracy"] * 100), textcoords="offset points", xytext=(4, 4), fontsize=8)
        b.bar(c["name"], c["latency_ms"]["p99"], color="tab:orange", label="p99" if c is cascade[0] else None)
        b.bar(c["name"], c["latency_ms"]["p50"], color="tab:blue", label="p50" if c is cascade[0] else None)
    a.set(xlabel="cloud CPU per frame, % of all-cloud", ylabel="accuracy % (sample images)",
          title="the cascade against all-cloud and all-edge")
    a.grid(alpha=0.3)
    b.set(ylabel="end-to-end latency per frame (ms)", title="latency (frames paced as a camera)")
    b.tick_params(axis="x", rotation=30, labelsize=8)
    b.legend()
    fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "cascade.png", dpi=110)
    plt.close(fig)

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for threads, style in ((1, "o-"), (2, "s--")):
        for stage in sorted({x["stage"] for x in r["raw"]}):
            pts = [x for x in r["raw"] if x["stage"] == stage and x["threads"] == threads]
            a.plot([p["batch"] for p in pts], [p["samples_per_second"]["median"] for p in pts], style,
                   label=f"stage {stage}, {threads} thread{'s' if threads > 1 else ''}")
    a.set(xscale="log", xlabel="batch", ylabel="samples/s", title="raw onnxruntime-node per stage")
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    loads = r["worker"]["open_loop"]
    b.plot([x["load"] * 100 for x in loads], [x["latency_ms"]["p50"] for x in loads], "o-", label="p50")
    b.plot([x["load"] * 100 for x in loads], [x["latency_ms"]["p99"] for x in loads], "s-", label="p99")
    b.set(xlabel="offered load, % of measured capacity", ylabel="worker request latency (ms)",
          title="worker under open-loop load")
    b.grid(alpha=0.3)
    b.legend()
    fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "throughput.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'cascade.png'} and {out / 'throughput.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
