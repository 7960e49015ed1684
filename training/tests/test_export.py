"""The exported stage graphs, chained in onnxruntime, against PyTorch on real images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ranet.cascade import StageRunner
from ranet.export import export_stages, model_version, sha256_file
from ranet.model import normalise
from ranet.pipeline import export_model_dir

REQUIRED = ["format", "name", "version", "input", "classes", "stages", "exits", "operating_points", "eval", "training"]


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("stages")
    return out, export_stages(tiny_model, out)


def test_export_chained_stages_reproduce_pytorch_logits(tiny_model, exported, test_images):
    out, specs = exported
    images = test_images[0][:64]
    got = StageRunner(out, specs).logits(images)
    with torch.no_grad():
        want = torch.stack(tiny_model(normalise(torch.from_numpy(images), tiny_model.cfg.mean, tiny_model.cfg.std)))
    assert got.shape == tuple(want.shape)
    assert np.abs(got - want.numpy()).max() <= 1e-4


def test_export_stage_io_follows_the_chaining_rule(exported):
    _, specs = exported
    produced = set()
    for spec in specs:
        for t in spec.inputs:
            assert t.name == "image" or t.name in produced
            assert t.shape[0] == -1
        produced |= {t.name for t in spec.outputs}
    assert [t.name for t in specs[0].outputs] == ["logits0", "logits1", "state0"]
    assert specs[0].inputs[0].dtype == "uint8"


def test_export_batch_dimension_is_dynamic(exported, test_images):
    out, specs = exported
    runner = StageRunner(out, specs)
    one = runner.logits(test_images[0][:1])
    five = runner.logits(test_images[0][:5])
    assert np.allclose(one[:, 0], five[:, 0], atol=1e-5)


@pytest.fixture(scope="module")
def model_dir(tiny_model, tmp_path_factory):
    from ranet.config import get_preset, to_dict

    folder = tmp_path_factory.mktemp("model")
    ckpt = folder / "ckpt.pt"
    p = get_preset("tiny")
    torch.save({"model": tiny_model.state_dict(), "model_config": to_dict(p.model), "train_config": to_dict(p.train),
                "epoch": 0, "wall_seconds": 0.0, "history": [], "device": "test", "versions": {"torch": "test"}}, ckpt)
    out = folder / "dir"
    export_model_dir(ckpt, out, name="ranet-test", log=lambda *_: None, limit=400)
    return out


def test_manifest_has_required_keys_and_true_hashes(model_dir):
    m = json.loads((model_dir / "manifest.json").read_text())
    for key in REQUIRED:
        assert key in m, key
    assert m["format"] == "cascade-model/1"
    files = [model_dir / s["file"] for s in m["stages"]]
    for s, f in zip(m["stages"], files):
        assert s["sha256"] == sha256_file(f)
    assert m["version"] == model_version(files)
    assert len(m["version"]) == 16
    assert [e["index"] for e in m["exits"]] == list(range(6))
    macs = [e["macs"] for e in m["exits"]]
    assert macs == sorted(macs)
    for op in m["operating_points"]:
        assert len(op["thresholds"]) == 6 and op["thresholds"][-1] == 0.0
        for key in ("val_accuracy", "expected_macs", "edge_exit_rate"):
            assert key in op
    assert m["eval"]["test"]["samples"] == 400
    assert (model_dir / "accuracy_vs_macs.png").stat().st_size > 0


def test_cascade_without_early_exits_equals_the_last_exit_everywhere(model_dir, test_images):
    from ranet.calibrate import NEVER
    from ranet.cascade import ModelDir, run_cascade

    model = ModelDir.load(model_dir)
    images = test_images[0][:40]
    last_only = np.array([NEVER] * 5 + [0.0])
    results = run_cascade(model, images, last_only, split=1, encoding="fp32")
    want = model.runner.logits(images)[-1].argmax(1)
    assert len(results) == 40
    assert all(r["exit"] == 5 and r["tier"] == "cloud" for r in results)
    assert [r["class"] for r in results] == want.tolist()
    assert results[0]["bytes"] == 3072 + 4 * 40 * 8 * 8


def test_cascade_with_zero_thresholds_answers_everything_at_the_first_exit(model_dir, test_images):
    from ranet.cascade import ModelDir, run_cascade, summarise

    model = ModelDir.load(model_dir)
    results = run_cascade(model, test_images[0][:30], np.zeros(6), split=1)
    s = summarise(results, test_images[1][:30], 6)
    assert s["frames"] == 30 and s["offload_rate"] == 0.0 and s["exits"][0] == 30


def test_cascade_refuses_an_unknown_operating_point(model_dir):
    from ranet.cascade import ModelDir

    with pytest.raises(KeyError, match="balanced"):
        ModelDir.load(model_dir).thresholds("turbo")


SCHEMA = Path(__file__).resolve().parents[2] / "models" / "manifest.schema.json"


def test_manifest_conforms_to_the_shared_schema(model_dir):
    """The JSON Schema TypeScript checks too: the exported manifest and the committed default both conform."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for path in (model_dir / "manifest.json", SCHEMA.parent / "ranet-cifar10" / "manifest.json"):
        found = validator.iter_errors(json.loads(path.read_text()))
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]
        assert errors == [], path
