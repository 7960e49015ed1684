// What the profile scripts share: onnxruntime-node from a given package folder (the GPU machine has no workspace),
// and random inputs for a stage (throughput only: the values do not matter).
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';

/** onnxruntime-node as resolved from `from` (a folder with a package.json whose node_modules hold it). */
export function ortFrom(from) {
  return createRequire(join(resolve(from), 'package.json'))('onnxruntime-node');
}

/** A random tensor of a manifest tensor spec at `batch` (its -1 dimension). */
export function randomTensor(ort, spec, batch) {
  const dims = spec.shape.map((d) => (d === -1 ? batch : d));
  const n = dims.reduce((a, b) => a * b, 1);
  const data =
    spec.dtype === 'uint8'
      ? new Uint8Array(n).map(() => (Math.random() * 256) | 0)
      : new Float32Array(n).map(() => Math.random());
  return new ort.Tensor(spec.dtype, data, dims);
}
