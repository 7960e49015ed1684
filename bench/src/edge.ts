import { EdgeAgent, openSource } from '@cascade/edge';
import { StageRunner, StageSessions, type ModelDir } from '@cascade/runtime';
import { Worker } from 'node:worker_threads';
import { percentile, spread, type Spread } from './stats.js';

export interface EdgeOverhead {
  threads: number;
  pipeline: number;
  frames: number;
  frames_per_second: Spread;
  latency_ms_p50: Spread;
}

/**
 * Edge agent throughput when every frame ends at exit 1 (stage 0 only, batch 1, no network): the cost of the
 * worker thread, the exit rule and the source on top of raw onnxruntime.
 */
export async function edgeOverhead(
  model: string,
  samples: string,
  o: { threads: number[]; frames: number; runs: number; exits: number },
  log: (m: string) => void,
): Promise<EdgeOverhead[]> {
  const out: EdgeOverhead[] = [];
  for (const [threads, pipeline] of o.threads.flatMap(
    (t) =>
      [
        [t, 1],
        [t, 2],
      ] as const,
  )) {
    const agent = await EdgeAgent.create(
      { model, id: 'bench-edge', threads, pipeline, metricsPort: -1, thresholds: new Array<number>(o.exits).fill(0) },
      () => undefined,
    );
    const fps: number[] = [];
    const p50: number[] = [];
    try {
      await agent.run(await openSource(samples, { size: 32, limit: 50 }), () => undefined); // warm-up
      for (let r = 0; r < o.runs; r++) {
        const lat: number[] = [];
        const start = performance.now();
        const n = await agent.run(await openSource(samples, { size: 32, limit: o.frames }), (res) =>
          lat.push(res.latency_ms),
        );
        fps.push((n * 1000) / (performance.now() - start));
        p50.push(percentile(lat, 0.5));
      }
    } finally {
      await agent.shutdown();
    }
    out.push({ threads, pipeline, frames: o.frames, frames_per_second: spread(fps), latency_ms_p50: spread(p50) });
    log(`edge threads ${threads} pipeline ${pipeline}: ${spread(fps).median.toFixed(0)} frames/s`);
  }
  return out;
}

export interface HandOff {
  in_thread_us: Spread;
  worker_thread_us: Spread;
  bare_postmessage_round_trip_us: Spread;
}

/** Where edge time goes: stage 0 for one frame on the calling thread, through StageRunner, and a bare thread round trip. */
export async function handOff(model: ModelDir, image: Uint8Array, runs: number, calls: number): Promise<HandOff> {
  const perCall = async (fn: () => Promise<unknown>) => {
    for (let i = 0; i < 100; i++) await fn();
    const t = performance.now();
    for (let i = 0; i < calls; i++) await fn();
    return ((performance.now() - t) / calls) * 1000;
  };
  const feeds = () => ({ image: { data: image.slice(), dims: [1, ...model.manifest.input.shape] } });
  const local = await StageSessions.create(model, { last: 0, threads: 1 });
  const runner = await StageRunner.create(model, { last: 0, threads: 1 });
  const echo = new Worker(
    "require('node:worker_threads').parentPort.on('message', (m) => require('node:worker_threads').parentPort.postMessage(m));",
    { eval: true },
  );
  let wake: () => void = () => undefined;
  echo.on('message', () => wake());
  const a: number[] = [];
  const b: number[] = [];
  const c: number[] = [];
  try {
    for (let r = 0; r < runs; r++) {
      a.push(await perCall(() => local.run(0, feeds())));
      b.push(await perCall(() => runner.run(0, feeds())));
      c.push(
        await perCall(
          () =>
            new Promise<void>((resolve) => {
              wake = resolve;
              echo.postMessage({ r });
            }),
        ),
      );
    }
  } finally {
    await local.release();
    await runner.close();
    await echo.terminate();
  }
  return { in_thread_us: spread(a), worker_thread_us: spread(b), bare_postmessage_round_trip_us: spread(c) };
}
