/**
 * The tensor codec of the wire format, byte-identical to training/ranet/codec.py (checked by golden vectors).
 *
 * Arithmetic is float64 on float32 inputs, rounding is floor(v + 0.5), bytes are little-endian.
 * int8 quantises one sample per channel (dimension 0): lo = min(0, min x), hi = max(0, max x),
 * scale = f32((hi - lo) / 255) (1 when hi == lo), zero = clamp(floor(-128 - lo / scale + 0.5), -128, 127),
 * q = clamp(floor(x / scale + 0.5) + zero, -128, 127).
 */

import { CascadeError, ERROR_CODES } from './errors.js';

export const ENCODINGS = ['fp32', 'fp16', 'int8'] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** One sample's tensor as it travels. */
export interface EncodedTensor {
  encoding: Encoding;
  shape: number[];
  data: Uint8Array;
  /** int8 only: float32 scale per channel. */
  scales?: Float32Array;
  /** int8 only: zero point per channel. */
  zeroPoints?: Int8Array;
}

export class CodecError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.CODEC, message, options);
  }
}

/** At most `max` characters of a value quoted in an error message, so that a reply quoting it stays small. */
export function clip(value: unknown, max = 48): string {
  const s = String(value);
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} chars)`;
}

/** A shape for error messages: at most 8 dimensions shown. */
export function formatShape(shape: readonly number[]): string {
  return shape.length <= 8 ? `[${shape.join(', ')}]` : `[${shape.slice(0, 8).join(', ')}, … (${shape.length} dims)]`;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Bytes of tensor payload: data plus int8's per-channel scale (4 B) and zero point (1 B). */
export function payloadBytes(t: EncodedTensor): number {
  return t.data.byteLength + (t.scales ? t.scales.length * 4 : 0) + (t.zeroPoints ? t.zeroPoints.length : 0);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of a float32 value, round to nearest even (as numpy's cast). */
export function toHalfBits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow to inf
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000; // implicit leading one
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m += 1;
    return sign | m; // may carry into the smallest normal, which is the right encoding
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m += 1;
    if (m === 0x400) {
      m = 0;
      e += 1;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function fromHalfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * Per-channel int8 quantisation of one sample laid out channel first. With `bits` under 8 each channel gets 2^bits
 * levels (codes -128 .. -128 + 2^bits - 1) instead of 256: the same int8 tensor on the wire, decoded the same way,
 * with fewer distinct values for a packer to code.
 */
export function quantizeInt8(
  x: Float32Array,
  shape: readonly number[],
  bits = 8,
): {
  q: Int8Array;
  scales: Float32Array;
  zeroPoints: Int8Array;
} {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new CodecError(`int8 bits must be 1 to 8, got ${bits}`);
  const levels = 2 ** bits - 1;
  const top = -128 + levels;
  const channels = shape[0] ?? 1;
  const per = x.length / channels;
  const q = new Int8Array(x.length);
  const scales = new Float32Array(channels);
  const zeroPoints = new Int8Array(channels);
  for (let c = 0; c < channels; c++) {
    const base = c * per;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < per; i++) {
      const v = x[base + i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    let scale = Math.fround((hi - lo) / levels);
    if (scale === 0) scale = 1;
    scales[c] = scale;
    const zp = clamp(Math.floor(-128 - lo / scale + 0.5), -128, top);
    zeroPoints[c] = zp;
    for (let i = 0; i < per; i++) q[base + i] = clamp(Math.floor(x[base + i]! / scale + 0.5) + zp, -128, top);
  }
  return { q, scales, zeroPoints };
}

export function dequantizeInt8(q: Int8Array, scales: Float32Array, zeroPoints: Int8Array): Float32Array {
  const out = new Float32Array(q.length);
  dequantizeInt8Into(q, scales, zeroPoints, out, 0);
  return out;
}

/** (q - zero point) * scale per channel, written into `out` from element `offset` on. */
function dequantizeInt8Into(
  q: Int8Array,
  scales: Float32Array,
  zeroPoints: Int8Array,
  out: Float32Array,
  offset: number,
): void {
  const per = q.length / scales.length;
  for (let c = 0; c < scales.length; c++) {
    const s = scales[c]!;
    const z = zeroPoints[c]!;
    for (let i = c * per; i < (c + 1) * per; i++) out[offset + i] = (q[i]! - z) * s;
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Encodes one sample (little-endian hosts, which is every platform Node.js ships for); `bits` (int8 only) gives each
 * channel 2^bits levels (quantizeInt8).
 */
export function encodeTensor(x: Float32Array, shape: readonly number[], encoding: Encoding, bits = 8): EncodedTensor {
  if (x.length !== elementCount(shape)) {
    throw new CodecError(`tensor has ${x.length} values but shape ${formatShape(shape)} needs ${elementCount(shape)}`);
  }
  switch (encoding) {
    case 'fp32':
      return { encoding, shape: [...shape], data: new Uint8Array(bytesOf(x)) };
    case 'fp16': {
      const h = new Uint16Array(x.length);
      for (let i = 0; i < x.length; i++) h[i] = toHalfBits(x[i]!);
      return { encoding, shape: [...shape], data: bytesOf(h) };
    }
    case 'int8': {
      const { q, scales, zeroPoints } = quantizeInt8(x, shape, bits);
      return { encoding, shape: [...shape], data: bytesOf(q), scales, zeroPoints };
    }
  }
}

/** Checks that a tensor's data and int8 parameters fit its shape; throws CodecError naming what does not. */
export function checkTensor(t: EncodedTensor): void {
  const n = elementCount(t.shape);
  const width = t.encoding === 'fp32' ? 4 : t.encoding === 'fp16' ? 2 : 1;
  if (t.data.byteLength !== n * width) {
    throw new CodecError(
      `${t.encoding} tensor of shape ${formatShape(t.shape)} needs ${n * width} bytes, got ${t.data.byteLength}`,
    );
  }
  if (t.encoding === 'int8') {
    const channels = t.shape[0] ?? 1;
    if (!t.scales || !t.zeroPoints || t.scales.length !== channels || t.zeroPoints.length !== channels) {
      throw new CodecError(`int8 tensor of ${channels} channels needs ${channels} scales and zero points`);
    }
  }
}

/** Decodes to float32; throws CodecError naming what does not fit. */
export function decodeTensor(t: EncodedTensor): Float32Array {
  const out = new Float32Array(elementCount(t.shape));
  decodeTensorInto(t, out, 0);
  return out;
}

/**
 * Decodes into `out` from element `offset` on (a row of a batch), without allocating; throws CodecError naming what
 * does not fit.
 */
export function decodeTensorInto(t: EncodedTensor, out: Float32Array, offset: number): void {
  checkTensor(t);
  const n = elementCount(t.shape);
  if (offset < 0 || offset + n > out.length) {
    throw new CodecError(`${n} values do not fit at ${offset} in a buffer of ${out.length}`);
  }
  switch (t.encoding) {
    case 'fp32':
      // Byte-wise: wire buffers are views into a larger message and need not be 4-byte aligned.
      new Uint8Array(out.buffer, out.byteOffset + offset * 4, n * 4).set(t.data);
      return;
    case 'fp16': {
      for (let i = 0; i < n; i++) out[offset + i] = fromHalfBits(t.data[2 * i]! | (t.data[2 * i + 1]! << 8));
      return;
    }
    case 'int8':
      dequantizeInt8Into(new Int8Array(t.data.buffer, t.data.byteOffset, n), t.scales!, t.zeroPoints!, out, offset);
      return;
  }
}
