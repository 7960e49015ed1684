import { elementCount } from '@cascade/proto';
import { describe, expect, it } from 'vitest';
import { createExecutor, InlineRunner, INLINE_MAX_MS } from './inline.js';
import { loadModelDir } from './manifest.js';
import { StageRunner } from './runner.js';

const model = await loadModelDir(new URL('../../../models/ranet-cifar10', import.meta.url).pathname);
const shape = model.manifest.input.shape;
const image = () => ({
  image: {
    data: Uint8Array.from({ length: elementCount(shape) }, (_, i) => (i * 31) & 255),
    dims: [1, ...shape],
  },
});

describe('stage executors: on a worker thread or inline', () => {
  it('inline and worker-thread stages give the same outputs', async () => {
    const inline = await createExecutor(model, { last: 0, threads: 1, thread: 'inline', probe: image });
    const worker = await createExecutor(model, { last: 0, threads: 1, thread: 'worker', probe: image });
    try {
      expect(inline.executor).toBeInstanceOf(InlineRunner);
      expect(worker.executor).toBeInstanceOf(StageRunner);
      const a = await inline.executor.run(0, image());
      const b = await worker.executor.run(0, image());
      expect(Object.keys(a.outputs).sort()).toEqual(Object.keys(b.outputs).sort());
      for (const k of Object.keys(a.outputs)) expect(a.outputs[k]!.data).toEqual(b.outputs[k]!.data);
      expect(a.computeMs).toBeGreaterThan(0);
    } finally {
      await inline.executor.close();
      await worker.executor.close();
    }
  });

  it('auto times the stages and keeps them inline only under the limit', async () => {
    const auto = await createExecutor(model, { last: 0, threads: 1, thread: 'auto', probe: image });
    try {
      expect(auto.medianMs).toBeGreaterThan(0);
      expect(auto.thread).toBe(auto.medianMs! < INLINE_MAX_MS ? 'inline' : 'worker');
      expect(auto.executor).toBeInstanceOf(auto.thread === 'inline' ? InlineRunner : StageRunner);
    } finally {
      await auto.executor.close();
    }
  });
});
