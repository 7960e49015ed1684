// Faults with real processes: a nats-server with JetStream, two cascade-cloud workers and a cascade-edge process over
// the bundled samples, paced so that the fault lands mid-stream. For each fault: frames in, results at the edge,
// results in the results stream (unique and duplicated), fallbacks by reason, and how soon workers serve again.
import {
  cloudCli,
  startNatsServer,
  startWorker,
  stopChild,
  track,
  type LocalNats,
  type WorkerProcess,
} from '@cascade/demo';
import { spawn } from 'node:child_process';
import { subjects } from '@cascade/proto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import {
  fallbacks,
  framesIn,
  inStream,
  startEdge as startSharedEdge,
  whenResults,
  type EdgeRun,
} from './edge-process.js';
import { encodeRequest, freePort, MODEL, model, until, validRequest } from './harness.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

function startEdge(url: string, id: string, frames: number, fps: number): EdgeRun {
  const edge = startSharedEdge({ url, id, frames, fps });
  cleanup.push(edge.kill);
  return edge;
}

async function workers(url: string, n = 2): Promise<WorkerProcess[]> {
  const ws: WorkerProcess[] = [];
  for (let i = 0; i < n; i++)
    ws.push(await startWorker({ model: MODEL, nats: url, id: `fw${i + 1}`, extra: ['--threads', '1'] }));
  for (const w of ws) cleanup.push(() => w.stop('SIGKILL'));
  return ws;
}

async function nats(options: { port?: number; storeDir?: string } = {}): Promise<LocalNats> {
  const s = await startNatsServer(options);
  cleanup.push(() => s.stop('SIGKILL'));
  return s;
}

/** Seconds until a worker answers a valid request through a fresh client, polling every 100 ms. */
async function secondsUntilServed(url: string, since: number): Promise<number> {
  const m = await model();
  const subject = subjects.infer(m.manifest.name);
  let nc: NatsConnection | undefined;
  try {
    for (;;) {
      try {
        nc ??= await connect({ servers: url, reconnect: false });
        const reply = await nc.request(subject, encodeRequest(validRequest(m)), { timeout: 500 });
        if (reply.data.length > 0) return (performance.now() - since) / 1000;
      } catch {
        // not yet
      }
      if (performance.now() - since > 30_000) throw new Error('no worker served within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await nc?.close();
  }
}

function report(
  fault: string,
  frames: number,
  edge: EdgeRun,
  stream: { unique: number; duplicates: number },
  servedAfter: number | null,
) {
  const reasons = fallbacks(edge);
  const row = {
    fault,
    frames_in: frames,
    results_at_edge: edge.results.length,
    results_in_stream: stream.unique,
    duplicates: stream.duplicates,
    fallbacks: reasons,
    workers_serving_after_s: servedAfter === null ? null : Math.round(servedAfter * 10) / 10,
  };
  console.log(`fault figures: ${JSON.stringify(row)}`);
  return row;
}

describe('faults - real processes, real nats-server', () => {
  it('a worker SIGKILLed mid-stream: every frame answered once, every result stored once', async () => {
    const s = await nats();
    const ws = await workers(s.url);
    const edge = startEdge(s.url, 'fault-kill', 600, 150);
    await whenResults(edge, 200);
    await ws[0]!.stop('SIGKILL');
    const served = secondsUntilServed(s.url, performance.now());
    expect(await edge.exit).toBe(0);
    const stream = await inStream(s.url, 'fault-kill');
    const row = report('worker SIGKILL', framesIn(edge), edge, stream, await served);
    expect(row).toMatchObject({ frames_in: 600, results_at_edge: 600, results_in_stream: 600, duplicates: 0 });
    expect(new Set(edge.results.map((x) => x.r.sequence)).size).toBe(600);
    expect(edge.results.slice(-100).filter((x) => x.r.tier === 'cloud').length).toBeGreaterThan(0); // the other worker goes on
  });

  for (const downSeconds of [3, 60]) {
    it(`nats-server SIGKILLed and restarted after ${downSeconds} s: nothing lost, nothing doubled, workers back within 5 s`, async () => {
      const port = await freePort();
      const first = await nats({ port });
      await workers(first.url);
      // The source outlasts the outage (the samples are 1,000 frames), so the edge is still running when NATS returns.
      const fps = Math.min(40, Math.floor(1000 / (downSeconds + 18)));
      const frames = Math.min(1000, Math.round((downSeconds + 15) * fps));
      const edge = startEdge(first.url, `fault-nats-${downSeconds}`, frames, fps);
      await whenResults(edge, 4 * fps);
      await first.stop('SIGKILL', { keepStore: true });
      await new Promise((r) => setTimeout(r, downSeconds * 1000));
      const second = await nats({ port, storeDir: first.storeDir });
      const back = performance.now();
      const servedAfter = await secondsUntilServed(second.url, back);
      expect(await edge.exit).toBe(0);
      const stream = await inStream(second.url, `fault-nats-${downSeconds}`);
      const row = report(`nats-server down ${downSeconds} s`, framesIn(edge), edge, stream, servedAfter);
      expect(row).toMatchObject({
        frames_in: frames,
        results_at_edge: frames,
        results_in_stream: frames,
        duplicates: 0,
      });
      expect(servedAfter).toBeLessThan(5);
      expect(row.fallbacks.disconnected ?? 0).toBeGreaterThan(0);
      // Offloads resumed: frames after the return were answered by the cloud again.
      expect(edge.results.filter((x) => x.at > back + 3000 && x.r.tier === 'cloud').length).toBeGreaterThan(0);
    }, 180_000);
  }

  it('an edge started before NATS answers locally, then offloads and stores every result once NATS comes', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const edge = startEdge(url, 'fault-early', 400, 50);
    await whenResults(edge, 100);
    expect(edge.results.every((x) => x.r.outcome !== 'offloaded')).toBe(true);
    const s = await nats({ port });
    await workers(s.url);
    const back = performance.now(); // workers are subscribed: from here the edge must find them
    const served = secondsUntilServed(s.url, back);
    expect(await edge.exit).toBe(0);
    const stream = await inStream(s.url, 'fault-early');
    const row = report('edge started before NATS', framesIn(edge), edge, stream, await served);
    expect(row).toMatchObject({ frames_in: 400, results_at_edge: 400, results_in_stream: 400, duplicates: 0 });
    expect(edge.results.some((x) => x.r.outcome === 'offloaded')).toBe(true);
    expect(edge.stderr()).toMatch(new RegExp(`nats_unreachable.*cannot connect to NATS at ${url} \\(set by --nats\\)`));
    // It tried several times while NATS was away, and said so once.
    expect(edge.stderr().match(/"nats_unreachable"/g)).toHaveLength(1);
  });

  it('a worker started before NATS waits for it (alive, not ready, one log line), serves once it comes; SIGTERM while waiting exits 0', async () => {
    const port = await freePort();
    const url = `nats://127.0.0.1:${port}`;
    const waiting = (id: string, metricsPort: number) => {
      const args = ['--model', MODEL, '--nats', url, '--id', id, '--threads', '1', '--metrics-host', '127.0.0.1'];
      const proc = track(
        spawn(process.execPath, [cloudCli(), ...args, '--metrics-port', String(metricsPort)], {
          stdio: ['ignore', 'ignore', 'pipe'],
        }),
      );
      let log = '';
      proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
      cleanup.push(() => stopChild(proc, 'SIGKILL'));
      return { proc, exit, log: () => log };
    };
    const metricsPort = await freePort();
    const get = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}${path}`);
      return [r.status, await r.text()];
    };
    const w = waiting('fw-early', metricsPort);
    await until('waiting line', () => w.log().includes('"worker_waiting_for_nats"'), 30_000, 50);
    await new Promise((r) => setTimeout(r, 3500)); // attempts at about 0, 1 and 3 s
    expect(await get('/healthz')).toEqual([200, 'ok\n']);
    expect(await get('/readyz')).toEqual([503, 'not ready: waiting for NATS\n']);
    expect(w.log().match(/"nats_unreachable"/g)).toHaveLength(1);
    expect(w.log()).toMatch(new RegExp(`nats_unreachable.*cannot connect to NATS at ${url} \\(set by --nats\\)`));
    expect(w.proc.exitCode).toBeNull();

    const s = await nats({ port });
    const served = await secondsUntilServed(s.url, performance.now());
    console.log(`worker started 3.5 s before NATS: serving ${served.toFixed(1)} s after NATS came`);
    expect(served).toBeLessThan(20); // the backoff's longest wait is 15 s
    expect(await get('/readyz')).toEqual([200, 'ready\n']);
    expect(w.log().match(/"nats_connected"/g)).toHaveLength(1);
    expect(w.log()).toContain('"worker_started"');
    await s.stop('SIGKILL');

    // NATS gone before the worker ever reached it: a stop still drains and exits 0 at once.
    const late = waiting('fw-never', await freePort());
    await until('waiting line', () => late.log().includes('"worker_waiting_for_nats"'), 30_000, 50);
    const t = performance.now();
    late.proc.kill('SIGTERM');
    expect(await late.exit).toBe(0);
    expect(performance.now() - t).toBeLessThan(5000);
    expect(late.log()).toContain('"worker_stopped"');
  });

  it('SIGTERM of the edge mid-stream: it stops taking frames, answers and stores every frame it took, exits 0', async () => {
    const s = await nats();
    await workers(s.url);
    const edge = startEdge(s.url, 'fault-term', 1000, 100);
    await whenResults(edge, 300);
    edge.proc.kill('SIGTERM');
    expect(await edge.exit).toBe(0);
    const taken = framesIn(edge);
    const stream = await inStream(s.url, 'fault-term');
    const row = report('edge SIGTERM mid-stream', taken, edge, stream, null);
    expect(taken).toBeGreaterThanOrEqual(300);
    expect(taken).toBeLessThan(1000);
    expect(row).toMatchObject({ results_at_edge: taken, results_in_stream: taken, duplicates: 0 });
  });
});

describe('faults - a connection that cannot recover', () => {
  it('a worker whose password is refused after a NATS restart says why and exits 1, for its orchestrator to restart it', async () => {
    const port = await freePort();
    const users = (pw: string) => `authorization { users = [ { user: worker, password: "${pw}" } ] }`;
    const first = await startNatsServer({ port, extraConfig: users('old-secret') });
    cleanup.push(() => first.stop('SIGKILL'));
    const w = await startWorker({
      model: MODEL, nats: first.url, id: 'fw-auth', extra: ['--threads', '1', '--nats-user', 'worker', '--nats-password', 'old-secret'],
    }); // prettier-ignore
    cleanup.push(() => w.stop('SIGKILL'));
    const exit = new Promise<number | null>((resolve) => w.process.once('exit', (code) => resolve(code)));
    await first.stop('SIGKILL');
    const second = await startNatsServer({ port, extraConfig: users('rotated-secret') });
    cleanup.push(() => second.stop('SIGKILL'));
    expect(await exit).toBe(1);
    expect(w.log()).toMatch(
      /"event":"nats_closed".*cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+ \(set by --nats\)/,
    );
    expect(w.log()).toMatch(/Authorization Violation/i);
  }, 60_000);
});
