import numpy as np

from ranet.calibrate import NEVER, evaluate_thresholds, exit_index, find_thresholds, geometric_targets, operating_points


def test_geometric_targets_sum_to_one_and_lean_early_for_small_q():
    t = geometric_targets(0.5, 4)
    assert np.isclose(t.sum(), 1.0)
    assert list(t) == sorted(t, reverse=True)
    assert np.allclose(geometric_targets(1.0, 5), 0.2)


def test_thresholds_fill_each_exit_quota_on_distinct_confidences():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1.0, size=(3, 1000))
    targets = np.array([0.5, 0.3, 0.2])
    t = find_thresholds(conf, targets)
    where = exit_index(conf, t)
    counts = np.bincount(where, minlength=3)
    assert counts[0] == 500
    assert counts[1] == 300
    assert counts[2] == 200
    assert t[-1] == 0.0


def test_zero_quota_exit_never_fires():
    conf = np.array([[0.9, 0.99], [0.5, 0.5]])
    t = find_thresholds(conf, np.array([0.0, 1.0]))
    assert t[0] == NEVER
    assert list(exit_index(conf, t)) == [1, 1]


def test_evaluate_thresholds_counts_accuracy_and_expected_macs():
    # 2 exits, 4 samples; exit 0 is confident on samples 0 and 1.
    probs = np.zeros((2, 4, 2))
    probs[0] = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]]
    probs[1] = [[0.3, 0.7], [0.1, 0.9], [0.1, 0.9], [0.8, 0.2]]
    labels = np.array([0, 0, 1, 0])
    out = evaluate_thresholds(probs, labels, np.array([0.75, 0.0]), [10, 30])
    assert out.exit_fractions == [0.5, 0.5]
    assert out.expected_macs == 20.0
    assert out.accuracy == 0.75  # sample 1 wrong at exit 0 (class 1), others right


def test_operating_points_stay_within_their_tolerance_on_validation():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(4, 2000, 10))
    for e in range(4):  # later exits are right more often
        right = rng.uniform(size=2000) < 0.5 + 0.1 * e
        logits[e, right, labels[right]] += 3
    p = np.exp(logits) / np.exp(logits).sum(2, keepdims=True)
    last = (p[-1].argmax(1) == labels).mean()
    ops = operating_points(p, labels, [1, 2, 3, 4], edge_exits=2)
    assert [o["name"] for o in ops] == ["accurate", "balanced", "efficient", "economy"]
    for o in ops:
        assert o["val_accuracy"] >= last - o["max_drop"]
        assert 0 <= o["edge_exit_rate"] <= 1
    macs = [o["expected_macs"] for o in ops]
    assert macs == sorted(macs, reverse=True)
