import { describe, expect, it } from 'vitest';
import { decodeTensor, encodeTensor } from './codec.js';
import { fromWireImage, fromWireTensor, imageTensor, subjects, toWireTensor, v1, type DType } from './wire.js';

describe('wire - requests', () => {
  const state = new Float32Array(4 * 2 * 2).map((_, i) => (i % 5) * 0.25);

  it('an int8 request survives protobuf encoding byte for byte', () => {
    const enc = encodeTensor(state, [4, 2, 2], 'int8');
    const req = v1.InferRequest.encode({
      requestId: 'r1',
      edgeId: 'cam-1',
      model: 'ranet-cifar10',
      modelVersion: '0123456789abcdef',
      firstStage: 1,
      image: imageTensor(new Uint8Array(12).fill(7), [3, 2, 2]),
      state: [toWireTensor('state0', enc)],
      deadlineUnixMs: 1_800_000_000_000,
    }).finish();
    const back = v1.InferRequest.decode(req);
    expect(back.requestId).toBe('r1');
    expect(back.deadlineUnixMs).toBe(1_800_000_000_000);
    expect(Array.from(fromWireImage(back.image, [3, 2, 2]))).toEqual(new Array(12).fill(7));
    const t = fromWireTensor(back.state[0]!);
    expect(t.shape).toEqual([4, 2, 2]);
    expect(decodeTensor(t)).toEqual(decodeTensor(enc));
  });

  it('a reply carries either a prediction or a coded error', () => {
    const err = v1.InferReply.decode(
      v1.InferReply.encode({
        requestId: 'x',
        error: { code: v1.ErrorCode.OVERLOADED, message: 'queue full' },
      }).finish(),
    );
    expect(err.result).toBe('error');
    expect(v1.ErrorCode[err.error!.code!]).toBe('OVERLOADED');
  });

  it('subjects follow cascade.v1', () => {
    expect(subjects.infer('ranet-cifar10')).toBe('cascade.v1.infer.ranet-cifar10');
    expect(subjects.infer('ranet-cifar10', 'df13cbb76cdb991c')).toBe('cascade.v1.infer.ranet-cifar10.df13cbb76cdb991c');
    expect(subjects.results('cam-7')).toBe('cascade.v1.results.cam-7');
  });
});

describe('wire - bad tensors', () => {
  it('an unknown dtype names the tensor', () => {
    expect(() => fromWireTensor({ name: 'state0', dtype: 99 as DType, shape: [1], data: new Uint8Array(4) })).toThrow(
      /state0: dtype 99/,
    );
  });
  it('a negative dimension is refused', () => {
    expect(() => fromWireTensor({ name: 's', dtype: v1.DType.FP32, shape: [-1, 2], data: new Uint8Array(8) })).toThrow(
      /shape/,
    );
  });
  it('an image of the wrong shape or size is refused', () => {
    expect(() => fromWireImage(imageTensor(new Uint8Array(12), [3, 2, 2]), [3, 32, 32])).toThrow(/does not match/);
    expect(() => fromWireImage(imageTensor(new Uint8Array(5), [3, 2, 2]), [3, 2, 2])).toThrow(/5 bytes, expected 12/);
    expect(() => fromWireImage(undefined, [3, 2, 2])).toThrow(/no image/);
  });
});
