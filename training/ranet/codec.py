"""The carried-state encodings of the wire format, specified so that every runtime produces identical bytes.

All arithmetic is float64 on float32 inputs; rounding is floor(v + 0.5); results are little-endian.

- ``fp32``: the values as they are.
- ``fp16``: IEEE half precision, round to nearest even (numpy's cast).
- ``int8``: per-channel affine quantisation of one sample ``[C, ...]``: for channel c, lo = min(0, min x),
  hi = max(0, max x), scale = float32((hi - lo) / 255) (1 when hi == lo), zero_point = clamp(floor(-128 - lo /
  scale + 0.5), -128, 127), q = clamp(floor(x / scale + 0.5) + zero_point, -128, 127); decoding gives
  float32((q - zero_point) * scale). Scales travel as float32, zero points as int8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENCODINGS = ("fp32", "fp16", "int8")


@dataclass
class Encoded:
    """One sample's tensor as it travels: raw bytes plus, for int8, per-channel scale and zero point."""

    encoding: str
    shape: tuple[int, ...]
    data: bytes
    scales: np.ndarray | None = None  # float32 [C]
    zero_points: np.ndarray | None = None  # int8 [C]

    @property
    def nbytes(self) -> int:
        """Bytes of tensor payload: data plus per-channel parameters."""
        extra = 0 if self.scales is None else self.scales.size * 4 + self.zero_points.size  # type: ignore[union-attr]
        return len(self.data) + extra


def _round(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5)


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q int8 [C, ...], scales float32 [C], zero_points int8 [C]) for one sample laid out channel first."""
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    lo = np.minimum(flat.min(axis=1), 0.0)
    hi = np.maximum(flat.max(axis=1), 0.0)
    scale = ((hi - lo) / 255.0).astype(np.float32)
    scale[scale == 0] = 1.0
    s64 = scale.astype(np.float64)
    zp = np.clip(_round(-128.0 - lo / s64), -128, 127)
    q = np.clip(_round(flat / s64[:, None]) + zp[:, None], -128, 127)
    return q.astype(np.int8).reshape(x.shape), scale, zp.astype(np.int8)


def dequantize_int8(q: np.ndarray, scales: np.ndarray, zero_points: np.ndarray) -> np.ndarray:
    flat = q.reshape(q.shape[0], -1).astype(np.float64)
    out = (flat - zero_points.astype(np.float64)[:, None]) * scales.astype(np.float64)[:, None]
    return out.astype(np.float32).reshape(q.shape)


def encode(x: np.ndarray, encoding: str) -> Encoded:
    """Encodes one sample (no batch dimension)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if encoding == "fp32":
        return Encoded(encoding, x.shape, x.astype("<f4").tobytes())
    if encoding == "fp16":
        with np.errstate(over="ignore"):  # beyond 65504 becomes inf, as IEEE half precision does
            return Encoded(encoding, x.shape, x.astype("<f2").tobytes())
    if encoding == "int8":
        q, s, z = quantize_int8(x)
        return Encoded(encoding, x.shape, q.tobytes(), s, z)
    raise ValueError(f"unknown encoding {encoding!r}; use one of {ENCODINGS}")


def decode(e: Encoded) -> np.ndarray:
    if e.encoding == "fp32":
        return np.frombuffer(e.data, dtype="<f4").reshape(e.shape).astype(np.float32)
    if e.encoding == "fp16":
        return np.frombuffer(e.data, dtype="<f2").reshape(e.shape).astype(np.float32)
    if e.encoding == "int8":
        q = np.frombuffer(e.data, dtype=np.int8).reshape(e.shape)
        return dequantize_int8(q, e.scales, e.zero_points)  # type: ignore[arg-type]
    raise ValueError(f"unknown encoding {e.encoding!r}; use one of {ENCODINGS}")


def roundtrip_batch(x: np.ndarray, encoding: str) -> np.ndarray:
    """Encodes and decodes each sample of a batch, as the edge and the worker would."""
    return np.stack([decode(encode(s, encoding)) for s in x])


def golden_vectors(seed: int = 7) -> dict:
    """Small tensors with their exact encodings, for other runtimes' codec tests."""
    rng = np.random.default_rng(seed)
    cases = {
        "relu_state": np.maximum(rng.normal(0.5, 1.0, (4, 3, 3)), 0).astype(np.float32),
        "signed": rng.normal(0, 3, (3, 2, 4)).astype(np.float32),
        "constant_and_zero_channels": np.stack([np.full((2, 2), 1.25), np.zeros((2, 2)), np.full((2, 2), -7.0)]
                                               ).astype(np.float32),
        "fp16_edges": np.array([[65504.0, 70000.0, 1e-8, -6.1e-5, 0.1, 1 / 3, 2049.0, -0.0]], dtype=np.float32),
        "ties": np.array([[0.0, 0.5, 1.5, 2.5, 127.5, 255.0], [-1.0, 0.0, 0.25, 0.75, 1.0, 3.0]], dtype=np.float32),
    }
    out = []
    for name, x in cases.items():
        with np.errstate(over="ignore"):
            half = x.astype("<f2").tobytes().hex()
        q, s, z = quantize_int8(x)
        out.append({
            "name": name, "shape": list(x.shape),
            "fp32": x.astype("<f4").tobytes().hex(),
            "fp16": half,
            "int8": {"data": q.tobytes().hex(), "scales": s.astype("<f4").tobytes().hex(),
                     "zero_points": z.tobytes().hex(),
                     "decoded": dequantize_int8(q, s, z).astype("<f4").tobytes().hex()},
        })
    return {"format": "cascade-codec-golden/1", "spec": "training/ranet/codec.py", "cases": out}
