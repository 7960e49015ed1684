"""Plots of benchmark results (python bench/plot.py [latest.json | soak.json | scenarios.json | edge-budget.json]);
PNGs go beside the JSON."""

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


RUN_STYLE = {
    "fixed": ("tab:grey", "fixed thresholds"),
    "controller": ("tab:blue", "controller"),
    "controller, auto mode": ("tab:green", "controller, --mode auto"),
}


def scenarios(r: dict, out: Path) -> None:
    """Fixed thresholds against the controller over time (scenarios.json -> scenario-*.png)."""
    machine = (f"{r['machine']['cpu']}, {r['machine']['cores']} cores; {r['fps']} frames/s, "
               f"shadow rate {r['shadow_rate']}")
    wrote = []
    if "drift" in r:
        d = r["drift"]
        n = d["frames_per_segment"]
        fig, (a, b, c) = plt.subplots(3, 1, figsize=(10, 9.5), gridspec_kw={"height_ratios": [1.2, 1, 1]})
        for name, run in d["runs"].items():
            color, label = RUN_STYLE[name]
            a.plot([x["frame"] for x in run["bins"]], [x["offload_rate"] * 100 for x in run["bins"]], color=color,
                   label=label)
            c.plot([t["frame"] for t in run["ticks"]], [t["estimated_loss"] * 100 if t["estimated_loss"] is not None
                                                       else float("nan") for t in run["ticks"]], color=color,
                   label=f"{label}: estimated loss at the thresholds in force")
            segs = run["segments"]
            c.step([i * n for i in range(len(segs) + 1)], [s["true_loss"] for s in segs] + [segs[-1]["true_loss"]],
                   where="post", color=color, linestyle="--", label=f"{label}: true loss (labels)")
        ctl = d["runs"].get("controller")
        if ctl:
            ticks = ctl["ticks"]
            for e in range(len(ticks[0]["thresholds"])):
                b.plot([t["frame"] for t in ticks], [t["thresholds"][e] for t in ticks], label=f"exit {e} threshold")
        budget = r["operating_point"].get("max_drop")
        if budget is not None:
            c.axhline(budget * 100, color="tab:red", linewidth=0.8, label=f"budget ({budget * 100:.1f} points)")
        for ax in (a, b, c):
            for i, seg in enumerate(d["segments"]):
                ax.axvline(i * n, color="black", linewidth=0.5, alpha=0.4)
                if ax is a:
                    ax.annotate(seg, (i * n + n / 2, 1.0), xycoords=("data", "axes fraction"), ha="center",
                                va="bottom", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        a.set(ylabel="offloaded, % (100-frame bins)")
        b.set(ylabel="edge thresholds (controller)")
        c.set(xlabel="frame", ylabel="accuracy given up\nagainst the last exit (points)")
        fig.suptitle(f"drift: clean, then corrupted frames ({r['operating_point']['name']})\n{machine}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scenario-drift.png", dpi=110)
        plt.close(fig)
        wrote.append("scenario-drift.png")
    if "pressure" in r:
        p = r["pressure"]
        fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
        for name, run in p["runs"].items():
            color, label = RUN_STYLE[name]
            frames = [x["frame"] for x in run["bins"]]
            a.plot(frames, [x["offload_rate"] * 100 for x in run["bins"]], color=color, label=f"{label}: offloaded %")
            a.bar(frames, [x["fallbacks"] for x in run["bins"]], width=60, color=color, alpha=0.5,
                  label=f"{label}: fallbacks per 100 frames")
            b.plot(frames, [x["p99_ms"] for x in run["bins"]], color=color, label=f"{label}: p99 per 100 frames")
        for ax in (a, b):
            ax.axvline(p["halved_at_frame"], color="tab:red", linewidth=0.8, label="worker CPU halved")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        b.axhline(p["timeout_ms"], color="black", linestyle=":", linewidth=0.8, label="offload deadline")
        a.set(ylabel="offloaded % / fallbacks")
        b.set(xlabel="frame", ylabel="frame latency p99 (ms)")
        fig.suptitle(f"pressure: two workers at {p['worker_cores_before']} cores each, halved mid-run\n{machine}",
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scenario-pressure.png", dpi=110)
        plt.close(fig)
        wrote.append("scenario-pressure.png")
    if "link" in r:
        k = r["link"]
        fig, ax = plt.subplots(figsize=(10, 3.8))
        for name, run in k["runs"].items():
            color, label = RUN_STYLE[name]
            ax.plot([x["frame"] for x in run["bins"]], [x["bytes_per_s"] / 1000 for x in run["bins"]], color=color,
                    label=label)
        ax.axhline(k["budget_bytes_per_s"] / 1000, color="tab:red", linewidth=0.8, label="bandwidth budget")
        ax.set(xlabel="frame", ylabel="offload kB/s (100-frame bins)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.suptitle(f"narrow link: a budget of a quarter of what the operating point sends\n{machine}", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "scenario-link.png", dpi=110)
        plt.close(fig)
        wrote.append("scenario-link.png")
    print(f"wrote {', '.join(str(out / w) for w in wrote)}")


def edge_budget(r: dict, out: Path) -> None:
    """Answered frames/s and how far behind the camera, per edge CPU budget (edge-budget.json -> edge-budget.png)."""
    configs = list(dict.fromkeys(x["config"] for x in r["runs"]))
    budgets = list(dict.fromkeys(x["budget_cores"] for x in r["runs"]))
    labels = [f"{b} core" if b else "no limit" for b in budgets]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(configs)
    for i, c in enumerate(configs):
        runs = {x["budget_cores"]: x for x in r["runs"] if x["config"] == c}
        xs = [j + (i - (len(configs) - 1) / 2) * width for j in range(len(budgets))]
        a.bar(xs, [runs[k]["answered_fps"] for k in budgets], width, label=c)
        b.bar(xs, [runs[k]["behind_ms"]["p99"] for k in budgets], width, label=c)
    a.axhline(r["fps"], color="grey", linestyle=":", label=f"camera ({r['fps']} fps)")
    a.set(xticks=range(len(budgets)), xticklabels=labels, xlabel="edge CPU budget", ylabel="frames answered per second",
          title="frames/s the camera gets answered")
    b.set(xticks=range(len(budgets)), xticklabels=labels, xlabel="edge CPU budget", yscale="log",
          ylabel="answer behind the camera, p99 (ms)", title="how far answers fall behind the camera")
    for ax in (a, b):
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(r["machine"], fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "edge-budget.png", dpi=110)
    plt.close(fig)
    print(f"wrote {out / 'edge-budget.png'}")


def main(path: Path) -> None:
    r = json.loads(path.read_text())
    out = path.parent
    if "samples" in r:
        soak(r, out)
        return
    if "runs" in r and "fps" in r:
        edge_budget(r, out)
        return
    if "drift" in r or "pressure" in r or "link" in r:
        scenarios(r, out)
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
