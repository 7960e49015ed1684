import { elementCount } from '@cascade/proto';
import type { Feeds, ModelDir } from '@cascade/runtime';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { callsPerSecond, spread, type Spread } from './stats.js';

export interface RawResult {
  stage: number;
  batch: number;
  threads: number;
  samples_per_second: Spread;
  /** CPU time of this process (onnxruntime's threads included) per sample, over every run and warm-up call. */
  cpu_seconds_per_sample: number;
}

/** Inputs for every stage at a batch size: real images, carried states from running the stages once. */
export async function stageInputs(model: ModelDir, images: Uint8Array, batch: number): Promise<Feeds[]> {
  const m = model.manifest;
  const pixels = elementCount(m.input.shape);
  const image = { data: images.slice(0, batch * pixels), dims: [batch, ...m.input.shape] };
  const session = (s: number) => ort.InferenceSession.create(join(model.path, m.stages[s]!.file));
  const feeds: Feeds[] = [];
  let carried: Feeds = {};
  for (const stage of m.stages) {
    const f: Feeds = { image };
    for (const t of stage.inputs) if (t.name !== 'image') f[t.name] = carried[t.name]!;
    feeds.push(f);
    const sess = await session(stage.index);
    const out = await sess.run(
      Object.fromEntries(
        Object.entries(f).map(([k, v]) => [k, new ort.Tensor(k === 'image' ? 'uint8' : 'float32', v.data, v.dims)]),
      ),
    );
    carried = Object.fromEntries(
      Object.entries(out).map(([k, v]) => [k, { data: v.data as Float32Array, dims: [...v.dims] }]),
    );
    await sess.release();
  }
  return feeds;
}

/** The limit: onnxruntime-node on the calling thread, same graphs, per stage, batch and thread count. */
export async function rawThroughput(
  model: ModelDir,
  images: Uint8Array,
  o: { batches: number[]; threads: number[]; runs: number; ms: number },
  log: (m: string) => void,
): Promise<RawResult[]> {
  const out: RawResult[] = [];
  const inputs = new Map<number, Feeds[]>();
  for (const b of o.batches) inputs.set(b, await stageInputs(model, images, b));
  for (const threads of o.threads) {
    for (const stage of model.manifest.stages) {
      const bytes = await readFile(join(model.path, stage.file));
      const sess = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
      });
      for (const batch of o.batches) {
        const f = inputs.get(batch)![stage.index]!;
        const feeds = Object.fromEntries(
          Object.entries(f).map(([k, v]) => [k, new ort.Tensor(k === 'image' ? 'uint8' : 'float32', v.data, v.dims)]),
        );
        const runs: number[] = [];
        let calls = 0;
        const cpu0 = process.cpuUsage();
        const call = () => {
          calls++;
          return sess.run(feeds);
        };
        for (let r = 0; r < o.runs; r++) runs.push(batch * (await callsPerSecond(call, o.ms)));
        const cpu = process.cpuUsage(cpu0);
        out.push({
          stage: stage.index,
          batch,
          threads,
          samples_per_second: spread(runs),
          cpu_seconds_per_sample: (cpu.user + cpu.system) / 1e6 / (calls * batch),
        });
        log(`raw stage ${stage.index} batch ${batch} threads ${threads}: ${spread(runs).median.toFixed(0)} samples/s`);
      }
      await sess.release();
    }
  }
  return out;
}
