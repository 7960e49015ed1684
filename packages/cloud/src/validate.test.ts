import { decodeTensor, elementCount, ErrorCode, v1, type InferRequestMessage } from '@cascade/proto';
import { compressTensor } from '@cascade/proto/compress';
import { brotliCompressSync } from 'node:zlib';
import { loadModelDir, operatingPoint } from '@cascade/runtime';
import { describe, expect, it } from 'vitest';
import { RequestError } from './errors.js';
import { MAX_REQUEST_ID, peekRequestId, validateRequest } from './validate.js';

const model = await loadModelDir(new URL('../../../models/ranet-cifar10', import.meta.url).pathname);
const m = model.manifest;
const thresholds = operatingPoint(m).thresholds;
const state = m.stages[1]!.inputs.filter((t) => t.name !== 'image')[0]!;
const per = state.shape.slice(1);
const n = elementCount(per);

function request(over: Partial<InferRequestMessage> = {}): Uint8Array {
  return v1.InferRequest.encode({
    requestId: 'r1',
    edgeId: 'e',
    model: m.name,
    modelVersion: m.version,
    firstStage: 1,
    image: { name: 'image', dtype: v1.DType.UINT8, shape: m.input.shape, data: new Uint8Array(3 * 32 * 32) },
    state: [{ name: state.name, dtype: v1.DType.FP32, shape: per, data: new Uint8Array(n * 4) }],
    deadlineUnixMs: Date.now() + 10_000,
    thresholds,
    ...over,
  }).finish();
}

function code(data: Uint8Array): string {
  try {
    validateRequest(data, m, 1 << 20);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(RequestError);
    expect((err as Error).message.length).toBeLessThan(400);
    return (err as RequestError).code;
  }
}

describe('validate - every number finite, every text short, every deadline real', () => {
  it('accepts a well-formed request', () => expect(code(request())).toBe('ok'));

  it('refuses NaN and infinity in fp32 values, int8 scales and edge confidence', () => {
    const f = new Float32Array(n);
    f[17] = Number.NaN;
    expect(
      code(
        request({ state: [{ name: state.name, dtype: v1.DType.FP32, shape: per, data: new Uint8Array(f.buffer) }] }),
      ),
    ).toBe(ErrorCode.BAD_REQUEST);
    const scales = new Array<number>(per[0]!).fill(0.1);
    scales[3] = Number.POSITIVE_INFINITY;
    const int8 = {
      name: state.name,
      dtype: v1.DType.INT8,
      shape: per,
      data: new Uint8Array(n),
      scale: scales,
      zeroPoint: new Uint8Array(per[0]!),
    };
    expect(code(request({ state: [int8] }))).toBe(ErrorCode.BAD_REQUEST);
    scales[3] = 3e38; // finite, but 255 steps of it are not in float32
    expect(code(request({ state: [{ ...int8, scale: scales }] }))).toBe(ErrorCode.BAD_REQUEST);
    scales[3] = 0.1;
    expect(code(request({ state: [{ ...int8, scale: scales }] }))).toBe('ok');
    const h = new Uint16Array(n);
    h[n - 1] = 0x7c00; // fp16 infinity
    const fp16 = { name: state.name, dtype: v1.DType.FP16, shape: per, data: new Uint8Array(h.buffer) };
    expect(code(request({ state: [fp16] }))).toBe(ErrorCode.BAD_REQUEST);
    h[n - 1] = 0x7bff; // the largest finite half
    expect(code(request({ state: [{ ...fp16, data: new Uint8Array(h.buffer) }] }))).toBe('ok');
    f[17] = 3.4e38;
    expect(code(request({ state: [{ name: state.name, dtype: v1.DType.FP32, shape: per, data: new Uint8Array(f.buffer) }] }))).toBe('ok'); // prettier-ignore
    expect(code(request({ thresholds: [] }))).toBe(ErrorCode.BAD_REQUEST); // required, not filled in by the worker
  });

  it('answers EXPIRED for a deadline that is zero, negative or past', () => {
    for (const d of [0, -5, Date.now() - 1]) expect(code(request({ deadlineUnixMs: d }))).toBe(ErrorCode.EXPIRED);
  });

  it('picks the version a request is for among those served, and names them all when it is none of them', () => {
    const other = { ...m, version: 'aaaa0000bbbb1111' };
    expect(validateRequest(request(), [other, m], 1 << 20).modelVersion).toBe(m.version);
    expect(validateRequest(request({ modelVersion: other.version }), [other, m], 1 << 20).modelVersion).toBe(other.version); // prettier-ignore
    expect(() => validateRequest(request({ modelVersion: 'cccc' }), [other, m], 1 << 20)).toThrow(
      `request is for ${m.name}@cccc, this worker serves ${m.name}@aaaa0000bbbb1111, ${m.name}@${m.version}`,
    );
  });

  it('quotes at most a short prefix of a huge field', () => {
    expect(code(request({ model: 'x'.repeat(900_000) }))).toBe(ErrorCode.MODEL_MISMATCH); // under the 1 MiB limit
    const huge = {
      name: state.name,
      dtype: v1.DType.FP32,
      shape: new Array<number>(90_000).fill(2),
      data: new Uint8Array(8),
    };
    expect(code(request({ state: [huge] }))).toBe(ErrorCode.BAD_REQUEST);
    expect(code(request({ requestId: 'i'.repeat(MAX_REQUEST_ID + 1) }))).toBe(ErrorCode.BAD_REQUEST);
  });
});

describe('peekRequestId - the id without decoding the request', () => {
  it('reads field 1, and gives up on truncated or oversized ids', () => {
    const data = request({ requestId: 'abc-123' });
    expect(peekRequestId(data)).toBe('abc-123');
    expect(peekRequestId(data.subarray(0, 4))).toBe('');
    expect(peekRequestId(new Uint8Array([0xff, 0xff, 0xff]))).toBe('');
    expect(peekRequestId(request({ requestId: 'x'.repeat(MAX_REQUEST_ID + 1) }))).toBe('');
  });
});

describe('validate - packed tensors', () => {
  const image = { name: 'image', dtype: v1.DType.UINT8, shape: m.input.shape, data: new Uint8Array(3 * 32 * 32) };
  const st = { name: state.name, dtype: v1.DType.FP32, shape: per, data: new Uint8Array(n * 4) };

  it('a request with Brotli-packed image and state validates to the same tensors as the unpacked one', () => {
    const pixels = Uint8Array.from({ length: 3 * 32 * 32 }, (_, i) => (i * 13) & 255);
    const values = new Float32Array(n).map((_, i) => Math.cos(i));
    const plain = { ...image, data: pixels };
    const s = { ...st, data: new Uint8Array(values.buffer) };
    const a = validateRequest(request({ image: plain, state: [s] }), m, 1 << 20);
    const b = validateRequest(request({ image: compressTensor(plain), state: [compressTensor(s)] }), m, 1 << 20);
    expect(Buffer.from(b.image)).toEqual(Buffer.from(a.image));
    expect(decodeTensor(b.state.get(state.name)!)).toEqual(values);
  });

  it('packed data that unpacks past the model’s shape, is not Brotli, or has an unknown packing is BAD_REQUEST', () => {
    const bomb = new Uint8Array(brotliCompressSync(new Uint8Array(16 * 1024 * 1024)));
    expect(code(request({ image: { ...image, data: bomb, compression: v1.Compression.BROTLI } }))).toBe('BAD_REQUEST');
    expect(code(request({ state: [{ ...st, data: new Uint8Array(9), compression: v1.Compression.BROTLI }] }))).toBe(
      'BAD_REQUEST',
    );
    expect(code(request({ image: { ...image, compression: 9 as never } }))).toBe('BAD_REQUEST');
  });
});
