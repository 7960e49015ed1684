import { EdgeAgent, openSource, paced, SummaryBuilder, type EdgeOptions, type Summary } from '@cascade/edge';
import { RESULTS_STREAM } from '@cascade/proto';
import { operatingPoint } from '@cascade/runtime';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startNatsServer, type LocalNats } from './nats-server.js';
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
  /** Frames per second fed to the edge; default: as fast as it takes them (20 with the live view). */
  fps?: number;
  /** Stops the run (after the frame in progress); the summary covers what ran. */
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
  /** Results stored in the results stream (JetStream) when the demo started its own nats-server, else null. */
  results_stored: number | null;
  wall_seconds: number;
}

/** Runs the whole cascade on this machine and returns its summary; always stops what it started. */
export async function runDemo(o: DemoOptions): Promise<{ report: DemoReport }> {
  const log = o.log ?? (() => undefined);
  const started = performance.now();
  let nats: LocalNats | undefined;
  const workers: WorkerProcess[] = [];
  let agent: EdgeAgent | undefined;
  try {
    let url = o.nats;
    if (!url) {
      nats = await startNatsServer();
      url = nats.url;
      log(`nats-server on ${url} (JetStream in ${nats.storeDir})`);
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
    const fps = o.fps ?? (o.livePort !== undefined ? 20 : undefined);
    // Aggregates only: the live view replays the images until stopped, and memory must not grow with it.
    const summary = new SummaryBuilder(m.exits.length);
    let frames = 0;
    do {
      const source = await openSource(o.images, { size: m.input.shape[1]!, ...(o.limit ? { limit: o.limit } : {}) });
      frames += await agent.run(paced(source, fps, o.signal), (r) => summary.add(r));
    } while (o.livePort !== undefined && !o.signal?.aborted);
    await agent.shutdown();
    const stored = nats ? await storedResults(url) : null;
    const op = operatingPoint(m, o.operatingPoint);
    const test = op.test;
    return {
      report: {
        model: m.name,
        version: m.version,
        split: agent.split,
        mode: agent.options.mode,
        encoding: agent.options.encoding,
        workers: workers.length,
        ...summary.summary(frames, op.name),
        // Rounded to the 4 decimals the manifest measured, without float noise (1 - 0.7928 = 0.20720000000000005).
        expected: {
          accuracy: test?.accuracy ?? null,
          offload_rate: test ? Math.round((1 - test.edge_exit_rate) * 1e4) / 1e4 : null,
        },
        results_stored: stored,
        wall_seconds: Math.round((performance.now() - started) / 10) / 100,
      },
    };
  } finally {
    await agent?.shutdown();
    await Promise.all(workers.map((w) => w.stop()));
    await nats?.stop();
  }
}

async function storedResults(url: string): Promise<number | null> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(RESULTS_STREAM.name)).state.messages;
  } catch {
    return null;
  } finally {
    await nc.close();
  }
}
