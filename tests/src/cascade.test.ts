import { startWorker, type WorkerProcess } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeResult } from '@cascade/edge';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, natsForTests, REPO, SAMPLES, type TestNats } from './harness.js';

let nats: TestNats;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  nats = await natsForTests();
});

afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop('SIGKILL')));
  await nats?.stop();
});

async function runEdge(options: { operatingPoint?: string; timeoutMs?: number; limit?: number; onResult?: (r: EdgeResult, n: number) => void } = {}) {
  const agent = await EdgeAgent.create(
    { model: MODEL, nats: nats.url, id: 'edge-test', threads: 1, timeoutMs: options.timeoutMs ?? 5000, ...(options.operatingPoint ? { operatingPoint: options.operatingPoint } : {}) },
    () => undefined,
  );
  const results: EdgeResult[] = [];
  try {
    const frames = await agent.run(await openSource(SAMPLES, { size: 32, ...(options.limit ? { limit: options.limit } : {}) }), (r) => {
      results.push(r);
      options.onResult?.(r, results.length);
    });
    return { frames, results };
  } finally {
    await agent.close();
  }
}

function pythonReference(operatingPoint: string): { exit: number; class: number; tier: string }[] {
  const out = join(mkdtempSync(join(tmpdir(), 'cascade-ref-')), 'ref.jsonl');
  execFileSync('python3', ['-m', 'ranet', 'cascade', '--model', MODEL, '--images', SAMPLES, '--operating-point', operatingPoint,
    '--encoding', 'int8', '--predictions', out], { cwd: join(REPO, 'training'), stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '1' } });
  return readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

const byIndex = (results: EdgeResult[]) => new Map(results.map((r) => [Number(r.frame.split('#')[1]), r]));

describe('cascade - edge agent and two workers over NATS', () => {
  it('every frame gets one result equal to the Python reference (same exit, same class)', async () => {
    workers.push(await startWorker({ model: MODEL, nats: nats.url, id: 'w1', extra: ['--threads', '1'] }));
    workers.push(await startWorker({ model: MODEL, nats: nats.url, id: 'w2', extra: ['--threads', '1'] }));
    const op = 'accurate';
    const { frames, results } = await runEdge({ operatingPoint: op });
    expect(frames).toBe(1000);
    expect(results).toHaveLength(1000);
    const got = byIndex(results);
    expect(got.size).toBe(1000);
    const offloaded = results.filter((r) => r.outcome === 'offloaded');
    expect(offloaded.length).toBeGreaterThan(50);
    expect(results.filter((r) => r.outcome === 'fallback' || r.outcome === 'error')).toEqual([]);
    expect(new Set(offloaded.map((r) => r.worker))).toEqual(new Set(['w1', 'w2']));
    const ref = pythonReference(op);
    const mismatches = ref
      .map((p, i) => ({ i, python: [p.exit, p.class, p.tier], edge: [got.get(i)!.exit, got.get(i)!.class, got.get(i)!.tier] }))
      .filter((d) => d.python.join() !== d.edge.join());
    expect(mismatches).toEqual([]);
  });

  it('a worker killed mid-run loses no frame: its in-flight frames fall back', async () => {
    expect(workers).toHaveLength(2);
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
    for (const r of results.filter((x) => x.outcome === 'fallback')) expect(['timeout', 'no_responders']).toContain(r.fallback_reason);
    // The surviving worker keeps answering after the kill.
    const late = results.slice(400).filter((r) => r.outcome === 'offloaded');
    expect(late.length).toBeGreaterThan(0);
    expect(new Set(late.map((r) => r.worker))).toEqual(new Set(['w2']));
    workers.shift();
  });

  it('no workers: every hard frame falls back at once with no_responders', async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
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
