import { EdgeAgent, openSource, summarise, type EdgeOptions, type EdgeResult, type Summary } from '@cascade/edge';
import { operatingPoint } from '@cascade/runtime';
import { ensureNatsServer, startNatsServer, type LocalNats } from './nats-server.js';
import { startWorker, type WorkerProcess } from './processes.js';

export interface DemoOptions {
  model: string;
  images: string;
  workers: number;
  operatingPoint?: string;
  mode?: EdgeOptions['mode'];
  encoding?: EdgeOptions['encoding'];
  limit?: number;
  /** Use this NATS server instead of starting one. */
  nats?: string;
  log?: (msg: string) => void;
  /** Serve the live view on this port (0: any free port) and replay the images until `signal` aborts. */
  livePort?: number;
  signal?: AbortSignal;
}

export interface DemoReport extends Summary {
  model: string;
  version: string;
  split: number;
  mode: string;
  encoding: string;
  workers: number;
  /** What the manifest's operating point measured on the whole CIFAR-10 test set, for comparison. */
  expected: { accuracy: number | null; offload_rate: number | null };
  wall_seconds: number;
}

/** Runs the whole cascade on this machine and returns its summary; always stops what it started. */
export async function runDemo(o: DemoOptions): Promise<{ report: DemoReport; results: EdgeResult[] }> {
  const log = o.log ?? (() => undefined);
  const started = performance.now();
  let nats: LocalNats | undefined;
  const workers: WorkerProcess[] = [];
  let agent: EdgeAgent | undefined;
  try {
    let url = o.nats;
    if (!url) {
      ensureNatsServer(log);
      nats = await startNatsServer();
      url = nats.url;
      log(`nats-server on ${url}`);
    }
    for (let i = 0; i < o.workers; i++) {
      workers.push(await startWorker({ model: o.model, nats: url, id: `worker-${i + 1}`, extra: ['--threads', '1'] }));
    }
    log(`${workers.length} cloud workers serving`);
    agent = await EdgeAgent.create(
      {
        model: o.model,
        nats: url,
        id: 'demo-edge',
        threads: 1,
        metricsPort: o.livePort ?? -1,
        metricsHost: '127.0.0.1',
        ...(o.operatingPoint ? { operatingPoint: o.operatingPoint } : {}),
        ...(o.mode ? { mode: o.mode } : {}),
        ...(o.encoding ? { encoding: o.encoding } : {}),
      },
      () => undefined,
    );
    const m = agent.model.manifest;
    if (o.livePort !== undefined) log(`live view on http://127.0.0.1:${agent.metricsPort}/ (Ctrl-C to stop)`);
    const results: EdgeResult[] = [];
    let frames = 0;
    do {
      const source = await openSource(o.images, { size: m.input.shape[1]!, ...(o.limit ? { limit: o.limit } : {}) });
      frames += await agent.run(source, (r) => results.push(r));
    } while (o.livePort !== undefined && !o.signal?.aborted);
    const op = operatingPoint(m, o.operatingPoint);
    const test = op.test;
    return {
      results,
      report: {
        model: m.name,
        version: m.version,
        split: agent.split,
        mode: agent.options.mode,
        encoding: agent.options.encoding,
        workers: workers.length,
        ...summarise(results, frames, op.name, m.exits.length),
        expected: { accuracy: test?.accuracy ?? null, offload_rate: test ? 1 - test.edge_exit_rate : null },
        wall_seconds: (performance.now() - started) / 1000,
      },
    };
  } finally {
    await agent?.close();
    await Promise.all(workers.map((w) => w.stop()));
    await nats?.stop();
  }
}
