import { brotliCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodeTensor } from './codec.js';
import { compressTensor, inflateTensor } from './compress.js';
import { imageTensor, toWireTensor, v1, type TensorMessage } from './wire.js';

const roundTrip = (msg: TensorMessage, shape: number[]) =>
  inflateTensor(v1.Tensor.decode(v1.Tensor.encode(compressTensor(msg)).finish()), shape);

describe('tensor compression on the wire', () => {
  it('is lossless for images, int8, fp16 and fp32 tensors, and leaves an uncompressed tensor as it is', () => {
    const pixels = Uint8Array.from({ length: 3 * 32 * 32 }, (_, i) => (i * 7 + ((i >> 5) % 3) * 40) & 255);
    const image = imageTensor(pixels, [3, 32, 32]);
    expect(compressTensor(image).compression).toBe(v1.Compression.BROTLI_ROW_DELTA);
    expect(roundTrip(image, [3, 32, 32]).data).toEqual(pixels);
    const values = Float32Array.from({ length: 16 * 4 * 4 }, (_, i) => Math.sin(i) * (i % 5));
    for (const encoding of ['int8', 'fp16', 'fp32'] as const) {
      const msg = toWireTensor('state0', encodeTensor(values, [16, 4, 4], encoding));
      const back = roundTrip(msg, [16, 4, 4]);
      expect(back.data, encoding).toEqual(msg.data);
      expect(back.compression).toBe(v1.Compression.COMPRESSION_NONE);
      expect(back.scale).toEqual(msg.scale ?? []);
    }
    expect(inflateTensor(image, [3, 32, 32])).toBe(image);
  });

  it('packs the smooth rows of an image smaller than its raw bytes', () => {
    const pixels = Uint8Array.from({ length: 3 * 32 * 32 }, (_, i) => 100 + (i % 32) + ((i >> 5) % 7));
    expect(compressTensor(imageTensor(pixels, [3, 32, 32])).data!.byteLength).toBeLessThan(pixels.byteLength / 4);
  });

  it('refuses, naming the tensor: a shape other than expected, data that is not Brotli, too many or too few bytes, an unknown packing', () => {
    const pixels = new Uint8Array(3 * 32 * 32).fill(9);
    const packed = compressTensor(imageTensor(pixels, [3, 32, 32]));
    expect(() => inflateTensor(packed, [3, 16, 16])).toThrow(/tensor image: shape \[3, 32, 32\] is not \[3, 16, 16\]/);
    expect(() => inflateTensor({ ...packed, data: new Uint8Array([1, 2, 3, 4]) }, [3, 32, 32])).toThrow(
      /tensor image: compressed data is not Brotli for 3072 bytes/,
    );
    // A small message that unpacks to far more than the shape holds stops at the shape's size (no large allocation).
    const bomb = new Uint8Array(brotliCompressSync(new Uint8Array(16 * 1024 * 1024)));
    expect(bomb.byteLength).toBeLessThan(1024);
    expect(() => inflateTensor({ ...packed, data: bomb }, [3, 32, 32])).toThrow(/holds more than 3072 bytes/);
    const short = new Uint8Array(brotliCompressSync(new Uint8Array(100)));
    expect(() => inflateTensor({ ...packed, data: short }, [3, 32, 32])).toThrow(/holds 100 bytes, expected 3072/);
    expect(() => inflateTensor({ ...packed, compression: 7 as never }, [3, 32, 32])).toThrow(
      /compression 7 is not known to this receiver/,
    );
  });
});
