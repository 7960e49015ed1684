import json

import numpy as np
import pytest

from ranet.__main__ import GOLDEN_PATH
from ranet.codec import decode, encode, golden_vectors, quantize_int8


def test_int8_round_trip_error_is_at_most_half_a_step_per_channel():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(0.3, 1.0, (16, 8, 8)), 0).astype(np.float32)
    e = encode(x, "int8")
    y = decode(e)
    step = e.scales[:, None, None]
    assert np.all(np.abs(y - x) <= step / 2 + 1e-6)
    assert e.nbytes == x.size + 16 * 5


def test_int8_keeps_zero_exact_for_relu_features():
    x = np.zeros((2, 4, 4), dtype=np.float32)
    x[0, 0, 0] = 5.0
    y = decode(encode(x, "int8"))
    assert y[0, 1, 1] == 0.0
    assert np.all(y[1] == 0.0)


def test_fp16_round_trip_relative_error_within_half_precision():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.01, 100, (4, 5)).astype(np.float32)
    y = decode(encode(x, "fp16"))
    assert np.all(np.abs(y - x) / x <= 2**-11)


def test_unknown_encoding_is_refused_by_name():
    with pytest.raises(ValueError, match="bf16"):
        encode(np.zeros((1, 1), np.float32), "bf16")


def test_int8_zero_point_and_scale_for_a_signed_channel():
    x = np.array([[-1.0, 0.0, 1.0]], dtype=np.float32)
    q, s, z = quantize_int8(x)
    assert s[0] == np.float32(2 / 255)
    assert q[0, 0] == -128
    assert q[0, 1] == z[0]  # zero maps exactly to the zero point
    assert np.all(np.abs(decode(encode(x, "int8")) - x) <= s[0] / 2 + 1e-7)


def test_committed_golden_vectors_match_this_codec():
    committed = json.loads(GOLDEN_PATH.read_text())
    assert committed == json.loads(json.dumps(golden_vectors()))
