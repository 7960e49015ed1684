import { startWorker, type WorkerProcess } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeOptions, type EdgeResult } from '@cascade/edge';
import { subjects, v1 } from '@cascade/proto';
import { connect } from '@nats-io/transport-node';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { metricValue, MODEL, natsForTests, pythonReference, SAMPLES, type TestNats } from './harness.js';

let nats: TestNats;

beforeAll(async () => {
  nats = await natsForTests();
});

afterAll(async () => {
  await nats?.stop();
});

/** Two workers for the tests of one describe block, stopped after them (each block starts its own). */
function twoWorkers(ids: [string, string]): WorkerProcess[] {
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    for (const id of ids)
      workers.push(await startWorker({ model: MODEL, nats: nats.url, id, extra: ['--threads', '1'] }));
  });
  afterAll(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
  });
  return workers;
}

interface RunOptions extends Partial<EdgeOptions> {
  limit?: number;
  onResult?: (r: EdgeResult, n: number) => void;
}

async function runEdge({ limit, onResult, ...edge }: RunOptions = {}) {
  const agent = await EdgeAgent.create(
    {
      model: MODEL,
      nats: nats.url,
      id: 'edge-test',
      threads: 1,
      timeoutMs: 5000,
      metricsPort: 0,
      metricsHost: '127.0.0.1',
      ...edge,
    },
    () => undefined,
  );
  const results: EdgeResult[] = [];
  try {
    const frames = await agent.run(await openSource(SAMPLES, { size: 32, ...(limit ? { limit } : {}) }), (r) => {
      results.push(r);
      onResult?.(r, results.length);
    });
    const metrics = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    return { frames, results, metrics };
  } finally {
    await agent.shutdown();
  }
}

const byIndex = (results: EdgeResult[]) => new Map(results.map((r) => [Number(r.frame.split('#')[1]), r]));

/** Frames whose exit, class or tier differ from the reference (by frame index). */
function mismatches(ref: { exit: number; class: number; tier: string }[], results: EdgeResult[]) {
  const got = byIndex(results);
  expect(got.size).toBe(ref.length);
  return ref
    .map((p, i) => ({
      i,
      python: [p.exit, p.class, p.tier].join(),
      edge: [got.get(i)?.exit, got.get(i)?.class, got.get(i)?.tier].join(),
    }))
    .filter((d) => d.python !== d.edge);
}

describe('cascade - edge agent and two workers over NATS', () => {
  twoWorkers(['w1', 'w2']);

  it('every frame gets one result equal to the Python reference (same exit, same class)', async () => {
    const op = 'accurate';
    const watcher = await connect({ servers: nats.url });
    const published: { frameId: string; outcome: string; tier: string }[] = [];
    const sub = watcher.subscribe(subjects.results('edge-test'), {
      callback: (_err, msg) => void published.push(v1.FrameResult.decode(msg.data) as never),
    });
    await watcher.flush();
    const { frames, results, metrics } = await runEdge({ operatingPoint: op });
    await watcher.flush();
    sub.unsubscribe();
    await watcher.close();
    // Every result is also published on cascade.v1.results.<edge-id>.
    expect(published).toHaveLength(1000);
    expect(new Set(published.map((p) => p.frameId))).toEqual(new Set(results.map((r) => r.frame)));
    expect(frames).toBe(1000);
    expect(results).toHaveLength(1000);
    expect(byIndex(results).size).toBe(1000);
    const offloaded = results.filter((r) => r.outcome === 'offloaded');
    expect(offloaded.length).toBeGreaterThan(50);
    expect(results.filter((r) => r.outcome === 'fallback' || r.outcome === 'error')).toEqual([]);
    expect(new Set(offloaded.map((r) => r.worker))).toEqual(new Set(['w1', 'w2']));
    expect(mismatches(pythonReference(op), results)).toEqual([]);
    // The edge's /metrics agree with its results.
    const count = (outcome: string) => results.filter((r) => r.outcome === outcome).length;
    expect(metricValue(metrics, 'cascade_edge_frames_total', { outcome: 'exited', edge: 'edge-test' })).toBe(
      count('exited'),
    );
    expect(metricValue(metrics, 'cascade_edge_frames_total', { outcome: 'offloaded' })).toBe(count('offloaded'));
    expect(metricValue(metrics, 'cascade_offload_bytes_count')).toBe(count('offloaded'));
    expect(metricValue(metrics, 'cascade_edge_stage_seconds_count', { stage: '0' })).toBe(1000);
    expect(metricValue(metrics, 'cascade_exit_total', { exit: '0', tier: 'edge' })).toBe(
      results.filter((r) => r.exit === 0).length,
    );
    expect(metrics).toMatch(/cascade_build_info\{component="edge",.*model_version="[0-9a-f]{16}".*\} 1/);
  });

  it('the WebAssembly backend gives the same results', async () => {
    const { results } = await runEdge({ operatingPoint: 'accurate', backend: 'web', limit: 300 });
    expect(results).toHaveLength(300);
    expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(10);
    expect(mismatches(pythonReference('accurate').slice(0, 300), results)).toEqual([]);
  });

  it('two frames in the edge stages at once give the same results', async () => {
    const { results } = await runEdge({ operatingPoint: 'accurate', pipeline: 2, limit: 300 });
    expect(results).toHaveLength(300);
    expect(mismatches(pythonReference('accurate').slice(0, 300), results)).toEqual([]);
  });

  it('image mode (the cloud redoes the edge stages) equals the unquantised reference', async () => {
    const { results } = await runEdge({ operatingPoint: 'accurate', mode: 'image', limit: 500 });
    const offloaded = results.filter((r) => r.outcome === 'offloaded');
    expect(offloaded.length).toBeGreaterThan(10);
    // The image (3,072 bytes) goes packed with a row delta and Brotli: smaller on average, header included.
    const mean = offloaded.reduce((a, r) => a + r.offload_bytes, 0) / offloaded.length;
    expect(mean).toBeLessThan(3072);
    expect(mismatches(pythonReference('accurate', 'fp32').slice(0, 500), results)).toEqual([]);
  });

  it('offloads sent unpacked (--compression none) give the same results, in more bytes', async () => {
    const packed = await runEdge({ operatingPoint: 'accurate', limit: 300 });
    const plain = await runEdge({ operatingPoint: 'accurate', limit: 300, compression: 'none' });
    expect(mismatches(pythonReference('accurate').slice(0, 300), plain.results)).toEqual([]);
    const bytes = (rs: EdgeResult[]) => rs.filter((r) => r.outcome === 'offloaded').map((r) => r.offload_bytes);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // Unpacked: the 3,072-byte image, a byte per element of the int8 state, a scale and zero point per channel (5
    // bytes), and the header. Packed: at least a fifth fewer bytes.
    const manifest = JSON.parse(readFileSync(join(MODEL, 'manifest.json'), 'utf8')) as {
      stages: { inputs: { name: string; shape: number[] }[] }[];
    };
    const state = manifest.stages[1]!.inputs.filter((t) => t.name !== 'image');
    const elements = state.reduce((a, t) => a + t.shape.slice(1).reduce((x, y) => x * y, 1), 0);
    const channels = state.reduce((a, t) => a + t.shape[1]!, 0);
    expect(Math.min(...bytes(plain.results))).toBeGreaterThan(3072 + elements + 5 * channels);
    expect(mean(bytes(packed.results))).toBeLessThan(0.8 * mean(bytes(plain.results)));
    const answers = (rs: EdgeResult[]) =>
      [...byIndex(rs)].sort((a, b) => a[0] - b[0]).map(([, r]) => [r.exit, r.class]);
    expect(answers(packed.results)).toEqual(answers(plain.results));
  });

  it('a state quantised to 6 bits (--state-bits 6) is answered by the same workers, in fewer bytes', async () => {
    const full = await runEdge({ operatingPoint: 'accurate', limit: 300 });
    const six = await runEdge({ operatingPoint: 'accurate', limit: 300, stateBits: 6 });
    expect(six.results).toHaveLength(300);
    expect(six.results.filter((r) => r.outcome === 'fallback' || r.outcome === 'error')).toEqual([]);
    const offloaded = (rs: EdgeResult[]) => rs.filter((r) => r.outcome === 'offloaded');
    expect(offloaded(six.results).length).toBe(offloaded(full.results).length); // the edge stages are unchanged
    const mean = (rs: EdgeResult[]) => rs.reduce((a, r) => a + r.offload_bytes, 0) / rs.length;
    expect(mean(offloaded(six.results))).toBeLessThan(0.95 * mean(offloaded(full.results)));
    // Over the 10,000 test images no class changed at 6 bits (bench/results/wire.md); these 300 agree in class.
    const classes = (rs: EdgeResult[]) => [...byIndex(rs)].sort((a, b) => a[0] - b[0]).map(([, r]) => r.class);
    expect(classes(six.results)).toEqual(classes(full.results));
  });
});

describe('cascade - a worker killed mid-run', () => {
  const workers = twoWorkers(['k1', 'k2']);

  it('loses no frame: its in-flight frames fall back, the other worker goes on', async () => {
    const victim = workers[0]!;
    let killed = false;
    const { frames, results } = await runEdge({
      operatingPoint: 'accurate',
      timeoutMs: 800,
      onResult: (_, n) => {
        if (n === 200 && !killed) {
          killed = true;
          victim.process.kill('SIGKILL');
        }
      },
    });
    expect(killed).toBe(true);
    expect(results).toHaveLength(frames);
    expect(byIndex(results).size).toBe(frames);
    expect(results.filter((r) => r.outcome === 'error')).toEqual([]);
    for (const r of results.filter((x) => x.outcome === 'fallback'))
      expect(['timeout', 'no_responders']).toContain(r.fallback_reason);
    // The surviving worker keeps answering after the kill.
    const late = results.slice(400).filter((r) => r.outcome === 'offloaded');
    expect(late.length).toBeGreaterThan(0);
    expect(new Set(late.map((r) => r.worker))).toEqual(new Set(['k2']));
  });
});

describe('cascade - no workers', () => {
  it('every hard frame falls back at once with no_responders', async () => {
    const { results } = await runEdge({ operatingPoint: 'accurate', timeoutMs: 60_000, limit: 300 });
    expect(results).toHaveLength(300);
    const hard = results.filter((r) => r.outcome !== 'exited');
    expect(hard.length).toBeGreaterThan(10);
    for (const r of hard) {
      expect(r.outcome).toBe('fallback');
      expect(r.fallback_reason).toBe('no_responders');
      expect(r.tier).toBe('edge');
    }
  });
});
