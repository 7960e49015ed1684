"""What the wire encodings of the carried state cost in accuracy and bytes, on the exported stages."""

from __future__ import annotations

import numpy as np

from .calibrate import exit_index
from .cascade import StageRunner, StageSpec, carried_outputs, softmax
from .codec import roundtrip_batch


def payload_bytes(specs: list[StageSpec], stage: int, image_bytes: int) -> dict[str, int]:
    """Tensor bytes of one offload after ``stage``: image plus carried state, per encoding; and image alone."""
    carried = set(carried_outputs(specs, stage))
    states = [t for t in specs[stage].outputs if t.name in carried]
    values = sum(int(np.prod(t.shape[1:])) for t in states)
    channels = sum(t.shape[1] for t in states)
    return {
        "image": image_bytes,
        "state_fp32": image_bytes + 4 * values,
        "state_fp16": image_bytes + 2 * values,
        "state_int8": image_bytes + values + 5 * channels,  # + float32 scale and int8 zero point per channel
    }


def split_study(runner: StageRunner, images: np.ndarray, labels: np.ndarray, split: int,
                fp32_logits: np.ndarray, thresholds: np.ndarray | None = None, batch: int = 1000) -> dict:
    """Runs stages split.. on carried states that went through each encoding; compares with fp32.

    Args:
        split: number of stages on the edge (the carried state of stage split-1 is encoded).
        fp32_logits: [exits, N, classes] from the unencoded chain.
        thresholds: an operating point whose cascade accuracy is also compared.
    """
    specs = runner.specs
    cloud_exits = [e for s in specs[split:] for e in s.exits]
    state_names = carried_outputs(specs, split - 1)
    out: dict = {"split": split, "cloud_exits": cloud_exits, "encodings": {}}
    for enc in ("fp16", "int8"):
        logits = fp32_logits.copy()
        for i in range(0, len(images), batch):
            x = images[i : i + batch]
            edge = runner.run(x, last=split - 1)
            feeds = {n: roundtrip_batch(edge[n], enc) for n in state_names}
            cloud = runner.run(x, first=split, feeds=feeds)
            for s in specs[split:]:
                for e, name in zip(s.exits, s.exit_outputs):
                    logits[e, i : i + batch] = cloud[name]
        ref_pred, pred = fp32_logits.argmax(2), logits.argmax(2)
        entry = {
            "changed_top1": {str(e): int((pred[e] != ref_pred[e]).sum()) for e in cloud_exits},
            "accuracy_fp32": {str(e): float((ref_pred[e] == labels).mean()) for e in cloud_exits},
            "accuracy": {str(e): float((pred[e] == labels).mean()) for e in cloud_exits},
        }
        if thresholds is not None:
            entry["cascade_accuracy_fp32"] = _cascade_accuracy(fp32_logits, labels, thresholds)
            entry["cascade_accuracy"] = _cascade_accuracy(logits, labels, thresholds)
        out["encodings"][enc] = entry
    return out


def _cascade_accuracy(logits: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    p = softmax(logits)
    where = exit_index(p.max(axis=2), thresholds)
    pred = p.argmax(axis=2)[where, np.arange(p.shape[1])]
    return float((pred == labels).mean())
