import { describe, expect, it } from 'vitest';
import { parseWorkerArgs } from './cli.js';
import { BATCH_DEFAULTS, compileWorkerOptions } from './options.js';

describe('worker options', () => {
  it('defaults are filled and documented values hold', () => {
    const o = compileWorkerOptions({ model: 'm' });
    expect(o.maxBatch).toBe(BATCH_DEFAULTS.cpu.maxBatch);
    expect(o.queue).toBe('cascade-workers');
    expect(o.executionProvider).toBe('cpu');
  });

  it('bad values are refused naming the field', () => {
    expect(() => compileWorkerOptions({ model: '' })).toThrow(/model/);
    expect(() => compileWorkerOptions({ model: 'm', maxBatch: 0 })).toThrow(
      /maxBatch must be an integer from 1 to 1024, got 0/,
    );
    expect(() => compileWorkerOptions({ model: 'm', executionProvider: 'tpu' as never })).toThrow(/cpu, webgpu, cuda/);
  });

  it('flags win over environment variables', () => {
    const o = parseWorkerArgs(['--model', 'a', '--max-batch', '8'], {
      CASCADE_MODEL: 'b',
      CASCADE_MAX_BATCH: '4',
      NATS_URL: 'nats://x:1',
    });
    expect(o).toMatchObject({ model: 'a', maxBatch: 8, nats: 'nats://x:1' });
  });

  it('a non-numeric number flag is named', () => {
    expect(() => parseWorkerArgs(['--model', 'a', '--queue-limit', 'lots'], {})).toThrow(
      /--queue-limit: "lots" is not a number/,
    );
  });
});

describe('worker flags - negative numbers', () => {
  it('--metrics-port -1 turns metrics off', () => {
    expect(parseWorkerArgs(['--model', 'a', '--metrics-port', '-1'], {})).toMatchObject({ metricsPort: -1 });
  });

  it('batching defaults follow the provider; a batch is at most 1,024', () => {
    const gpu = compileWorkerOptions({ model: 'm', executionProvider: 'webgpu' });
    expect([gpu.maxBatch, gpu.maxDelayMs, gpu.batchesInFlight, gpu.queueLimit]).toEqual([256, 5, 2, 2048]);
    expect(compileWorkerOptions({ model: 'm', executionProvider: 'webgpu', maxBatch: 1024 }).maxBatch).toBe(1024);
    expect(() => compileWorkerOptions({ model: 'm', maxBatch: 1025 })).toThrow(
      /maxBatch must be an integer from 1 to 1024, got 1025/,
    );
    expect(() => compileWorkerOptions({ model: 'm', batchesInFlight: 0 })).toThrow(/batchesInFlight/);
  });

  it('joined cloud graphs: on by default on a GPU, off on the CPU, as asked otherwise', () => {
    expect(compileWorkerOptions({ model: 'm', executionProvider: 'webgpu' }).fuse).toBe('on');
    expect(compileWorkerOptions({ model: 'm' }).fuse).toBe('off');
    expect(compileWorkerOptions({ model: 'm', fuse: 'on' }).fuse).toBe('on');
    expect(compileWorkerOptions({ model: 'm', executionProvider: 'cuda', fuse: 'off' }).fuse).toBe('off');
    expect(parseWorkerArgs(['--model', 'a', '--fuse', 'on'], {})).toMatchObject({ fuse: 'on' });
    expect(parseWorkerArgs(['--model', 'a'], { CASCADE_FUSE: 'off' })).toMatchObject({ fuse: 'off' });
    expect(() => parseWorkerArgs(['--model', 'a', '--fuse', 'yes'], {})).toThrow(
      /--fuse must be one of auto, on, off, got yes/,
    );
  });

  it('results stream replicas: 1 to 5, left alone unless asked for', () => {
    expect(compileWorkerOptions({ model: 'm' }).resultsReplicas).toBeUndefined();
    expect(parseWorkerArgs(['--model', 'a'], { CASCADE_RESULTS_REPLICAS: '3' })).toMatchObject({ resultsReplicas: 3 });
    expect(() => compileWorkerOptions({ model: 'm', resultsReplicas: 0 })).toThrow(
      /resultsReplicas must be an integer from 1 to 5, got 0/,
    );
    expect(() => compileWorkerOptions({ model: 'm', resultsReplicas: 7 })).toThrow(
      /resultsReplicas must be an integer from 1 to 5, got 7/,
    );
  });
});
