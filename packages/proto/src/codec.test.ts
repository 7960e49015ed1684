import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeTensor, encodeTensor, fromHalfBits, payloadBytes, toHalfBits, type EncodedTensor } from './codec.js';

interface GoldenCase {
  name: string;
  shape: number[];
  fp32: string;
  fp16: string;
  int8: { data: string; scales: string; zero_points: string; decoded: string };
}
const golden = JSON.parse(readFileSync(new URL('../testdata/codec-golden.json', import.meta.url), 'utf8')) as {
  cases: GoldenCase[];
};
const hex = (b: ArrayBufferView) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const floats = (h: string) => {
  const b = Buffer.from(h, 'hex');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

describe('codec - golden vectors shared with the Python exporter', () => {
  for (const c of golden.cases) {
    it(`${c.name}: fp16 and int8 bytes equal Python's`, () => {
      const x = floats(c.fp32);
      expect(hex(encodeTensor(x, c.shape, 'fp32').data)).toBe(c.fp32);
      expect(hex(encodeTensor(x, c.shape, 'fp16').data)).toBe(c.fp16);
      const q = encodeTensor(x, c.shape, 'int8');
      expect(hex(q.data)).toBe(c.int8.data);
      expect(hex(q.scales!)).toBe(c.int8.scales);
      expect(hex(q.zeroPoints!)).toBe(c.int8.zero_points);
      expect(hex(decodeTensor(q))).toBe(c.int8.decoded);
    });
  }
});

describe('codec - round trips', () => {
  const shape = [16, 8, 8];
  const x = new Float32Array(16 * 64).map((_, i) => Math.max(0, Math.sin(i * 0.37) * 3 + 0.5));

  it('int8 error is at most half a quantisation step per channel', () => {
    const e = encodeTensor(x, shape, 'int8');
    const y = decodeTensor(e);
    for (let i = 0; i < x.length; i++) {
      expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(e.scales![Math.floor(i / 64)]! / 2 + 1e-6);
    }
    expect(payloadBytes(e)).toBe(16 * 64 + 16 * 5);
  });

  it('int8 with fewer bits: at most 2^bits codes a channel, half a (coarser) step of error, decoded as any int8', () => {
    expect(hex(encodeTensor(x, shape, 'int8', 8).data)).toBe(hex(encodeTensor(x, shape, 'int8').data));
    for (const bits of [6, 4, 2]) {
      const e = encodeTensor(x, shape, 'int8', bits);
      const q = new Int8Array(e.data.buffer, e.data.byteOffset, e.data.length);
      for (let c = 0; c < 16; c++) {
        const codes = q.subarray(c * 64, (c + 1) * 64);
        expect(Math.min(...codes)).toBeGreaterThanOrEqual(-128);
        expect(Math.max(...codes)).toBeLessThanOrEqual(-128 + 2 ** bits - 1);
      }
      const y = decodeTensor(e);
      for (let i = 0; i < x.length; i++) {
        const step = e.scales![Math.floor(i / 64)]!;
        expect(Math.abs(y[i]! - x[i]!)).toBeLessThanOrEqual(step / 2 + 1e-6);
      }
    }
    expect(() => encodeTensor(x, shape, 'int8', 9)).toThrow('int8 bits must be 1 to 8, got 9');
  });

  it('fp16 relative error is within half precision', () => {
    const y = decodeTensor(encodeTensor(x, shape, 'fp16'));
    for (let i = 0; i < x.length; i++) {
      if (x[i]! > 1e-3) expect(Math.abs(y[i]! - x[i]!) / x[i]!).toBeLessThanOrEqual(2 ** -11);
    }
  });

  it('fp32 is exact', () => {
    expect(decodeTensor(encodeTensor(x, shape, 'fp32'))).toEqual(x);
  });

  it('half-precision bits round-trip every finite half', () => {
    for (let h = 0; h < 0x7c00; h += 7) expect(toHalfBits(fromHalfBits(h))).toBe(h);
  });
});

describe('codec - bad input', () => {
  it('a shape that does not match the values is refused', () => {
    expect(() => encodeTensor(new Float32Array(5), [2, 2], 'fp32')).toThrow(/5 values but shape \[2, 2\]/);
  });
  it('truncated data is refused with the expected size', () => {
    const t: EncodedTensor = { encoding: 'fp16', shape: [4], data: new Uint8Array(6) };
    expect(() => decodeTensor(t)).toThrow(/needs 8 bytes, got 6/);
  });
  it('int8 without per-channel parameters is refused', () => {
    const t: EncodedTensor = { encoding: 'int8', shape: [2, 2], data: new Uint8Array(4) };
    expect(() => decodeTensor(t)).toThrow(/2 scales and zero points/);
  });
});
