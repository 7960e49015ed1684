"""Exit thresholds for budgeted batch classification (the MSDNet/RANet budgeted evaluation), found on validation data
only.

A sample leaves at the first exit whose max-softmax confidence reaches that exit's threshold. Thresholds come
from a target exit distribution proportional to q^k, filled greedily exit by exit on the validation set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEVER = 2.0  # a threshold above 1 never fires: max-softmax confidence is at most 1
PAPER_Q = [p / 20 for p in range(1, 40)]


def geometric_targets(q: float, exits: int) -> np.ndarray:
    """Fraction of samples meant to leave at each exit, proportional to q^k."""
    w = q ** np.arange(1, exits + 1, dtype=np.float64)
    return w / w.sum()


def find_thresholds(conf: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Greedy per-exit thresholds.

    Args:
        conf: max-softmax confidence, [exits, N].
        targets: fraction meant to leave at each exit.

    Returns:
        One threshold per exit; the last is 0 (takes everything left).
    """
    exits, n = conf.shape
    thresholds = np.full(exits, NEVER)
    exited = np.zeros(n, dtype=bool)
    for k in range(exits - 1):
        quota = int(np.floor(n * targets[k]))
        remaining = np.sort(conf[k][~exited])[::-1]
        if quota > 0 and len(remaining) > 0:
            thresholds[k] = remaining[min(quota, len(remaining)) - 1]
            exited |= conf[k] >= thresholds[k]
    thresholds[-1] = 0.0
    return thresholds


def exit_index(conf: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each sample, the first exit whose confidence reaches its threshold."""
    fires = conf >= thresholds[:, None]
    fires[-1] = True
    return fires.argmax(axis=0)


@dataclass
class Outcome:
    """What a threshold set does on one data set."""

    accuracy: float
    expected_macs: float
    exit_fractions: list[float]

    def edge_exit_rate(self, edge_exits: int) -> float:
        return float(sum(self.exit_fractions[:edge_exits]))


def evaluate_thresholds(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray,
                        exit_macs: list[int]) -> Outcome:
    """Accuracy, expected cumulative MACs and exit distribution of ``thresholds`` on softmax ``probs``."""
    conf = probs.max(axis=2)
    where = exit_index(conf, thresholds)
    pred = probs.argmax(axis=2)[where, np.arange(probs.shape[1])]
    fractions = np.bincount(where, minlength=probs.shape[0]) / probs.shape[1]
    return Outcome(
        accuracy=float((pred == labels).mean()),
        expected_macs=float(fractions @ np.asarray(exit_macs, dtype=np.float64)),
        exit_fractions=[float(f) for f in fractions],
    )


def budgeted_curve(val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray, test_labels: np.ndarray,
                   exit_macs: list[int], qs: list[float] = PAPER_Q) -> list[dict]:
    """One point per q: thresholds from validation, accuracy and average MACs on test."""
    val_conf = val_probs.max(axis=2)
    points = []
    for q in qs:
        t = find_thresholds(val_conf, geometric_targets(q, val_probs.shape[0]))
        test = evaluate_thresholds(test_probs, test_labels, t, exit_macs)
        points.append({"q": q, "thresholds": [float(x) for x in t], "avg_macs": test.expected_macs,
                       "accuracy": test.accuracy, "exit_fractions": test.exit_fractions})
    return points


OPERATING_POINTS = {  # name: largest allowed drop below the last exit's validation accuracy
    "accurate": 0.0025,
    "balanced": 0.005,
    "efficient": 0.01,
    "economy": 0.02,
}


def operating_points(val_probs: np.ndarray, val_labels: np.ndarray, exit_macs: list[int], edge_exits: int,
                     drops: dict[str, float] = OPERATING_POINTS) -> list[dict]:
    """For each named accuracy tolerance, the cheapest threshold set (on validation) that stays within it.

    Candidates are the geometric family over a fine grid of q, and "everything at the last exit" (q = inf).
    """
    val_conf = val_probs.max(axis=2)
    last_acc = float((val_probs[-1].argmax(1) == val_labels).mean())
    exits = val_probs.shape[0]
    last_only = np.array([NEVER] * (exits - 1) + [0.0])
    candidates = [(evaluate_thresholds(val_probs, val_labels, last_only, exit_macs), float("inf"), last_only)]
    for q in np.round(np.arange(0.02, 4.0001, 0.02), 2):
        t = find_thresholds(val_conf, geometric_targets(float(q), val_probs.shape[0]))
        candidates.append((evaluate_thresholds(val_probs, val_labels, t, exit_macs), float(q), t))
    out = []
    for name, drop in drops.items():
        ok = [c for c in candidates if c[0].accuracy >= last_acc - drop]
        chosen, q, t = min(ok, key=lambda c: c[0].expected_macs)
        out.append({
            "name": name, "thresholds": [float(x) for x in t], "q": q, "max_drop": drop,
            "val_accuracy": chosen.accuracy, "expected_macs": chosen.expected_macs,
            "edge_exit_rate": chosen.edge_exit_rate(edge_exits), "exit_fractions": chosen.exit_fractions,
        })
    return out
