"""One ONNX graph per sub-network ("stage"), chained by tensor names (the model directory, training/README.md).

Stage s takes the uint8 image (normalised inside the graph) and, for s > 0, the previous stage's carried state;
it returns its exits' logits and, unless it is the last stage, its own carried state.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import Tensor, nn

from .cascade import StageSpec, TensorSpec
from .model import RANet, normalise

OPSET = 17


def exit_output(e: int) -> str:
    """The graph output that holds exit ``e``'s logits (the manifest records it per exit)."""
    return f"logits{e}"


def state_names(model: RANet, stage: int) -> list[str]:
    chains = model.subnets[stage].chains
    return [f"state{stage}"] if len(chains) == 1 else [f"state{stage}_{m}" for m in range(len(chains))]


def stage_specs(model: RANet) -> list[StageSpec]:
    cfg = model.cfg
    image = TensorSpec("image", "uint8", (-1, 3, cfg.image_size, cfg.image_size))
    specs, first_exit = [], 0
    for s, subnet in enumerate(model.subnets):
        exits = tuple(range(first_exit, first_exit + len(subnet.heads)))
        first_exit += len(exits)
        inputs = [image]
        if s > 0:
            prev = model.subnets[s - 1].chains
            inputs += [TensorSpec(n, "float32", (-1, c, r, r)) for n, (c, r) in zip(state_names(model, s - 1), prev)]
        outputs = [TensorSpec(exit_output(e), "float32", (-1, cfg.num_classes)) for e in exits]
        if s < len(model.subnets) - 1:
            outputs += [TensorSpec(n, "float32", (-1, c, r, r))
                        for n, (c, r) in zip(state_names(model, s), subnet.chains)]
        specs.append(StageSpec(s, exits, tuple(inputs), tuple(outputs), tuple(exit_output(e) for e in exits)))
    return specs


class StageGraph(nn.Module):
    """Sub-network ``stage`` with image normalisation, as exported."""

    def __init__(self, model: RANet, stage: int, last: bool) -> None:
        super().__init__()
        self.model, self.stage, self.last = model, stage, last

    def forward(self, image: Tensor, *carried: Tensor) -> tuple[Tensor, ...]:
        x = normalise(image, self.model.cfg.mean, self.model.cfg.std)
        logits, packed = self.model.run_stage(self.stage, x, list(carried) if carried else None)
        return tuple(logits) if self.last else (*logits, *packed)


def even_conv_inputs(graph_proto: onnx.ModelProto) -> int:
    """Gives every spatial Conv with an odd number of input channels one more, all zero; returns how many.

    onnxruntime 1.30's WebGPU provider miscomputes such Convs (a 3x3 Conv from 93, 99 or 105 channels into 24 or more
    gave errors of about 10 in its outputs, while 92, 94 and 96 channels, and 1x1 Convs, were exact; seen on Mesa's
    lavapipe). A Pad node appends a zero channel to the input and the weight gets a zero slice, so the values are
    unchanged (the export's parity check compares them with PyTorch).
    """
    g = graph_proto.graph
    inits = {i.name: i for i in g.initializer}
    nodes, changed = [], 0
    for node in g.node:
        w = numpy_helper.to_array(inits[node.input[1]]) if node.op_type == "Conv" and node.input[1] in inits else None
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        if w is None or group != 1 or w.shape[1] % 2 == 0 or w.shape[2:] == (1, 1):
            nodes.append(node)
            continue
        tag = f"{node.name or node.output[0]}/even"
        padded = np.concatenate([w, np.zeros((w.shape[0], 1, *w.shape[2:]), w.dtype)], axis=1)
        g.initializer.append(numpy_helper.from_array(padded, f"{tag}/weight"))
        g.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 1, 0, 0], np.int64), f"{tag}/pads"))
        nodes.append(helper.make_node("Pad", [node.input[0], f"{tag}/pads"], [f"{tag}/input"], name=f"{tag}/Pad"))
        node.input[0], node.input[1] = f"{tag}/input", f"{tag}/weight"
        nodes.append(node)
        changed += 1
    used = {i for n in nodes for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    del g.node[:]
    g.node.extend(nodes)
    return changed


def export_stages(model: RANet, out: Path) -> list[StageSpec]:
    """Writes ``stage-<s>.onnx`` for every stage into ``out``, each checked by ``onnx.checker``."""
    model = model.eval().cpu()
    specs = stage_specs(model)
    size = model.cfg.image_size
    image = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    carried: list[Tensor] = []
    for spec in specs:
        graph = StageGraph(model, spec.index, last=spec.index == len(specs) - 1).eval()
        names_in = [t.name for t in spec.inputs]
        names_out = [t.name for t in spec.outputs]
        path = out / spec.file
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph, (image, *carried), str(path), input_names=names_in, output_names=names_out,
                dynamic_axes={n: {0: "batch"} for n in names_in + names_out}, opset_version=OPSET, dynamo=False,
            )
            results = graph(image, *carried)
        proto = onnx.load(str(path))
        if even_conv_inputs(proto):
            onnx.save(proto, str(path))
        onnx.checker.check_model(proto, full_check=True)
        carried = list(results[len(spec.exits):])
    return specs


class FusedGraph(nn.Module):
    """Stages ``first``.. as one graph: the carried states stay inside it, only the exits' logits come out."""

    def __init__(self, model: RANet, first: int) -> None:
        super().__init__()
        self.model, self.first = model, first

    def forward(self, image: Tensor, *carried: Tensor) -> tuple[Tensor, ...]:
        x = normalise(image, self.model.cfg.mean, self.model.cfg.std)
        state, out = list(carried), []
        for s in range(self.first, len(self.model.subnets)):
            logits, state = self.model.run_stage(s, x, state)
            out += logits
        return tuple(out)


def export_fused(model: RANet, path: Path, first: int = 1) -> list[str]:
    """Writes stages ``first``.. as one ONNX graph (inputs: the image and stage ``first``'s carried state; outputs:
    every later exit's logits); returns the output names. A GPU worker that runs the cloud stages one graph each
    moves every carried state to the host and back between them; this graph keeps them on the device."""
    model = model.eval().cpu()
    specs = stage_specs(model)
    size = model.cfg.image_size
    image = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    carried: list[Tensor] = []
    with torch.no_grad():
        x = normalise(image, model.cfg.mean, model.cfg.std)
        for s in range(first):
            _, carried = model.run_stage(s, x, carried or None)
    names_in = [t.name for t in specs[first].inputs]
    names_out = [o for spec in specs[first:] for o in spec.exit_outputs]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            FusedGraph(model, first).eval(), (image, *carried), str(path), input_names=names_in,
            output_names=names_out, dynamic_axes={n: {0: "batch"} for n in names_in + names_out},
            opset_version=OPSET, dynamo=False,
        )
    proto = onnx.load(str(path))
    if even_conv_inputs(proto):
        onnx.save(proto, str(path))
    onnx.checker.check_model(proto, full_check=True)
    return names_out


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_version(paths: list[Path]) -> str:
    """First 16 hex digits of SHA-256 over the stage files, in stage order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
