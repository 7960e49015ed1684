"""Draws docs/system.png: the parts of Cascade and what crosses between them.

Run from the repository root: .venv/bin/python docs/system.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).with_name("system.png")

EDGE = "#dbeafe"
NATS = "#fef3c7"
CLOUD = "#dcfce7"
OPS = "#f3e8ff"


def box(ax, x, y, w, h, title, lines=(), color="#ffffff"):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            fc=color,
            ec="#334155",
            lw=1.2,
        )
    )
    ax.text(
        x + w / 2,
        y + h - 0.22,
        title,
        ha="center",
        va="top",
        fontsize=10.5,
        weight="bold",
        color="#0f172a",
    )
    for i, line in enumerate(lines):
        ax.text(
            x + w / 2,
            y + h - 0.62 - 0.3 * i,
            line,
            ha="center",
            va="top",
            fontsize=8.3,
            color="#1e293b",
        )


def arrow(ax, a, b, label="", color="#334155", style="-|>", rad=0.0, dy=0.12):
    ax.add_patch(
        FancyArrowPatch(
            a,
            b,
            arrowstyle=style,
            mutation_scale=13,
            lw=1.4,
            color=color,
            connectionstyle=f"arc3,rad={rad}",
        )
    )
    if label:
        ax.text(
            (a[0] + b[0]) / 2,
            (a[1] + b[1]) / 2 + dy,
            label,
            ha="center",
            va="bottom",
            fontsize=8,
            color=color,
        )


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 6.4), dpi=130)
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 6.4)
    ax.axis("off")
    ax.text(
        0.1,
        6.25,
        "Cascade: the cheap exits on the camera, the hard frames in the cloud",
        fontsize=13,
        weight="bold",
        va="top",
    )

    # Camera sites.
    ax.add_patch(
        FancyBboxPatch(
            (0.15, 0.5),
            3.7,
            5.1,
            boxstyle="round,pad=0.02,rounding_size=0.1",
            fc="#f8fafc",
            ec="#94a3b8",
            ls="--",
        )
    )
    ax.text(0.3, 5.5, "camera site", fontsize=9, color="#475569", va="top")
    box(
        ax,
        0.4,
        3.3,
        3.2,
        1.95,
        "cascade-edge (one per camera)",
        [
            "camera, RTSP or video via ffmpeg",
            "edge stages 0..split-1 (low resolution)",
            "confident exit: answered here",
            "unsure: offload image + state",
        ],
        EDGE,
    )
    box(
        ax,
        0.4,
        1.9,
        3.2,
        1.05,
        "outbox (on disk)",
        ["every result, until the stream acks it"],
        EDGE,
    )
    box(
        ax,
        0.4,
        0.65,
        3.2,
        0.95,
        "site nats-server (leaf node)",
        ["one link to the cloud"],
        NATS,
    )

    # NATS in the cloud.
    box(
        ax,
        4.6,
        2.55,
        3.3,
        2.7,
        "NATS cluster (3 nodes, JetStream)",
        [
            "requests: cascade.v1.infer.<model>.<version>",
            "queue group cascade-workers",
            "CASCADE_RESULTS stream (results, once)",
            "cascade-config, cascade-edges (KV)",
            "cascade-models (object store)",
        ],
        NATS,
    )

    # Cloud workers.
    box(
        ax,
        8.8,
        3.3,
        3.9,
        1.95,
        "cascade-cloud workers (scaled out)",
        [
            "validate, batch, stages split.. (high res)",
            "exit early in the cloud when confident",
            "CPU, or a GPU (WebGPU, CUDA)",
            "drain on SIGTERM, follow rollouts",
        ],
        CLOUD,
    )

    # Operations.
    box(
        ax,
        8.8,
        1.55,
        3.9,
        1.35,
        "operators",
        [
            "cascade: fleet settings, models, rollouts",
            "cascade-results: read the results",
        ],
        OPS,
    )
    box(
        ax,
        8.8,
        0.25,
        3.9,
        1.0,
        "Prometheus + Grafana",
        ["scrape every edge and worker: offload rate,", "latency, fallbacks, alerts"],
        OPS,
    )

    arrow(ax, (2.0, 3.3), (2.0, 2.95), "")
    arrow(ax, (2.0, 1.9), (2.0, 1.6), "")
    arrow(ax, (3.6, 1.15), (4.6, 2.75), "")
    ax.text(
        4.45,
        1.55,
        "one leaf link per site:\nits offloads and results",
        ha="left",
        fontsize=8,
        color="#334155",
    )
    arrow(ax, (3.6, 4.55), (4.6, 4.55), "hard frame\n(12.7 KB)", dy=0.05)
    arrow(ax, (4.6, 4.05), (3.6, 4.05), "answer", dy=-0.32)
    arrow(ax, (7.9, 4.55), (8.8, 4.55), "requests", dy=0.05)
    arrow(ax, (8.8, 4.05), (7.9, 4.05), "replies", dy=-0.32)
    arrow(ax, (8.8, 2.2), (7.9, 3.0), "settings, models", dy=0.0)
    ax.text(
        2.0,
        0.25,
        "results: edge -> outbox -> CASCADE_RESULTS (stored once)",
        ha="center",
        fontsize=8,
        color="#475569",
    )

    fig.tight_layout()
    fig.savefig(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
