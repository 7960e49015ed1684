"""Accuracy against MACs: anytime (per exit) and budgeted (thresholds from validation), beside the paper."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter

from . import paper


def accuracy_vs_macs(path: Path, title: str, exit_macs: list[int], exit_acc: list[float], budgeted: list[dict],
                     operating_points: list[dict]) -> None:
    """Writes a two-panel PNG: anytime accuracy per exit, and the budgeted curve with the operating points."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot([m / 1e6 for m in exit_macs], [x * 100 for x in exit_acc], "o-", label=title)
    a.plot(paper.ANYTIME_MMACS, paper.ANYTIME_ACC, "s--", color="grey", label="paper RANet (cifar10-paper)")
    for i, (m, acc) in enumerate(zip(exit_macs, exit_acc)):
        a.annotate(f"{i + 1}", (m / 1e6, acc * 100), textcoords="offset points", xytext=(3, -10), fontsize=8)
    a.set_xscale("log")
    a.set(xlabel="cumulative MMACs (log)", ylabel="test top-1 %", title="anytime prediction (per exit)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)

    b.plot([p["avg_macs"] / 1e6 for p in budgeted], [p["accuracy"] * 100 for p in budgeted], ".-", label=title)
    b.plot(paper.BUDGETED_MMACS, paper.BUDGETED_ACC, "s--", color="grey", label="paper RANet")
    for i, op in enumerate(operating_points):
        test = op.get("test", {})
        if test:
            b.plot(test["expected_macs"] / 1e6, test["accuracy"] * 100, "r*", markersize=10)
            b.annotate(op["name"], (test["expected_macs"] / 1e6, test["accuracy"] * 100), textcoords="offset points",
                       xytext=(6, -14 - 10 * i), fontsize=8, color="red",
                       arrowprops={"arrowstyle": "-", "color": "red", "lw": 0.5})
    b.set_xscale("log")
    b.set(xlabel="average MMACs per image (log)", ylabel="test top-1 %",
          title="budgeted batch classification (thresholds from validation)")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_curve(path: Path, history: list[dict]) -> None:
    """Validation accuracy of every exit after each epoch."""
    if not history:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    for e in range(len(history[0]["val_accuracy"])):
        ax.plot(epochs, [h["val_accuracy"][e] * 100 for h in history], label=f"exit {e + 1}")
    ax.set(xlabel="epoch", ylabel="validation top-1 %", title="training progress")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
