import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decide, exitsHere, loadModelDir, operatingPoint, StageRunner, type Feeds } from './index.js';

const MODEL = new URL('../../../models/ranet-cifar10', import.meta.url).pathname;
const SAMPLES = new URL('../../../samples/cifar10-test-1000.bin', import.meta.url).pathname;

async function sampleImages(n: number): Promise<Uint8Array> {
  const raw = await readFile(SAMPLES);
  const out = new Uint8Array(n * 3072);
  for (let i = 0; i < n; i++) out.set(raw.subarray(i * 3073 + 1, (i + 1) * 3073), i * 3072);
  return out;
}

describe('model directory - loading', () => {
  it('loads the committed default and checks its stage hashes', async () => {
    const m = await loadModelDir(MODEL);
    expect(m.manifest.name).toBe('ranet-cifar10');
    expect(m.manifest.stages.length).toBeGreaterThanOrEqual(2);
    expect(operatingPoint(m.manifest).thresholds.length).toBe(m.manifest.exits.length);
  });

  it('a stage file that does not match its hash is refused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-model-'));
    await cp(MODEL, dir, { recursive: true });
    const stage = join(dir, 'stage-0.onnx');
    const bytes = await readFile(stage);
    bytes[bytes.length - 1]! ^= 0xff;
    await writeFile(stage, bytes);
    await expect(loadModelDir(dir)).rejects.toThrow(/stage-0.onnx does not match its sha256/);
  });

  it('a manifest without a required key names the key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-model-'));
    const manifest = JSON.parse(await readFile(join(MODEL, 'manifest.json'), 'utf8'));
    delete manifest.exits;
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
    await expect(loadModelDir(dir)).rejects.toThrow(/missing required key "exits"/);
  });

  it('a missing folder says where it looked', async () => {
    await expect(loadModelDir('/nonexistent/model')).rejects.toThrow(/\/nonexistent\/model\/manifest.json/);
  });

  it('an unknown operating point lists the known ones', async () => {
    const m = await loadModelDir(MODEL, { verifyHashes: false });
    expect(() => operatingPoint(m.manifest, 'turbo')).toThrow(/balanced/);
  });
});

describe('stage runner - onnxruntime in a worker thread', () => {
  it('chained stages give the same logits in a batch as one by one', async () => {
    const model = await loadModelDir(MODEL);
    const runner = await StageRunner.create(model, { threads: 1 });
    try {
      const n = 8;
      const images = await sampleImages(n);
      const runAll = async (pixels: Uint8Array, batch: number) => {
        let tensors: Feeds = {};
        const logits: Record<string, Float32Array> = {};
        for (const stage of model.manifest.stages) {
          const feeds: Feeds = { image: { data: pixels.slice(), dims: [batch, 3, 32, 32] } };
          for (const t of stage.inputs) if (t.name !== 'image') feeds[t.name] = tensors[t.name]!;
          const { outputs } = await runner.run(stage.index, feeds);
          tensors = { ...tensors, ...outputs };
          for (const e of stage.exits) logits[`logits${e}`] = outputs[`logits${e}`]!.data as Float32Array;
        }
        return logits;
      };
      const batched = await runAll(images, n);
      for (let i = 0; i < n; i++) {
        const single = await runAll(images.slice(i * 3072, (i + 1) * 3072), 1);
        for (const [name, row] of Object.entries(single)) {
          const want = batched[name]!.subarray(i * 10, (i + 1) * 10);
          row.forEach((v, j) => expect(v).toBeCloseTo(want[j]!, 4));
        }
      }
    } finally {
      await runner.close();
    }
  });

  it('the event loop keeps running while a stage computes', async () => {
    const model = await loadModelDir(MODEL);
    const runner = await StageRunner.create(model, { threads: 1 });
    try {
      const images = await sampleImages(256);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const { computeMs } = await runner.run(0, { image: { data: images, dims: [256, 3, 32, 32] } });
      clearInterval(timer);
      expect(computeMs).toBeGreaterThan(5);
      expect(ticks).toBeGreaterThan(computeMs / 10);
    } finally {
      await runner.close();
    }
  });

  it('a bad feed is reported as an error and the runner keeps serving', async () => {
    const model = await loadModelDir(MODEL);
    const runner = await StageRunner.create(model, { threads: 1 });
    try {
      await expect(runner.run(0, { image: { data: new Uint8Array(10), dims: [1, 3, 32, 32] } })).rejects.toThrow();
      const ok = await runner.run(0, { image: { data: await sampleImages(1), dims: [1, 3, 32, 32] } });
      expect(ok.outputs['logits0']!.dims).toEqual([1, 10]);
    } finally {
      await runner.close();
    }
  });
});

describe('exit policy', () => {
  it('confidence is the max softmax and the last exit takes everything', () => {
    const d = decide([0, Math.log(3)]);
    expect(d.classIndex).toBe(1);
    expect(d.confidence).toBeCloseTo(0.75, 12);
    expect(exitsHere(0, 0.75, [0.8, 0.9, 0])).toBe(false);
    expect(exitsHere(1, 0.95, [0.8, 0.9, 0])).toBe(true);
    expect(exitsHere(2, 0.01, [0.8, 0.9, 0])).toBe(true);
  });
});

describe('stage runner - onnxruntime-web backend', () => {
  it('gives the same logits as onnxruntime-node', async () => {
    const model = await loadModelDir(MODEL);
    const images = await sampleImages(16);
    const node = await StageRunner.create(model, { threads: 1, last: 0 });
    const web = await StageRunner.create(model, { threads: 1, last: 0, backend: 'web' });
    try {
      const a = await node.run(0, { image: { data: images.slice(), dims: [16, 3, 32, 32] } });
      const b = await web.run(0, { image: { data: images.slice(), dims: [16, 3, 32, 32] } });
      for (const name of Object.keys(a.outputs)) {
        const x = a.outputs[name]!.data as Float32Array;
        const y = b.outputs[name]!.data as Float32Array;
        expect(y.length).toBe(x.length);
        let max = 0;
        for (let i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
        expect(max).toBeLessThan(1e-3);
      }
    } finally {
      await node.close();
      await web.close();
    }
  });
});
