import { startWorker, type WorkerProcess } from '@cascade/demo';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Svcm } from '@nats-io/services';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { subjects } from '@cascade/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeReply,
  encodeRequest,
  metricValue,
  MODEL,
  model,
  natsForTests,
  runEdge,
  validRequest,
  type TestNats,
} from './harness.js';
import type { ModelDir } from '@cascade/runtime';

let nats: TestNats;
let nc: NatsConnection;
let m: ModelDir;
let subject: string;

beforeAll(async () => {
  nats = await natsForTests();
  nc = await connect({ servers: nats.url });
  m = await model();
  subject = subjects.infer(m.manifest.name);
});

afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const ask = async (data: Uint8Array) => decodeReply((await nc.request(subject, data, { timeout: 10_000 })).data);

describe('worker - bad requests get coded errors and the worker keeps serving', () => {
  let worker: WorkerProcess;
  beforeAll(async () => {
    worker = await startWorker({
      model: MODEL,
      nats: nats.url,
      id: 'wbad',
      extra: ['--threads', '1', '--max-request-bytes', '65536'],
    });
  });
  afterAll(async () => {
    expect(await worker.stop()).toBe(0);
  });

  it('malformed bytes are BAD_REQUEST', async () => {
    const r = await ask(new Uint8Array([0xff, 0xff, 0xff, 0x0f, 0x01, 0x02]));
    expect(r.code).toBe('BAD_REQUEST');
    expect(r.error?.message).toMatch(/not a cascade.v1.InferRequest/);
  });

  it('a truncated request is BAD_REQUEST', async () => {
    const full = encodeRequest(validRequest(m));
    const r = await ask(full.subarray(0, Math.floor(full.length / 2)));
    expect(r.code).toBe('BAD_REQUEST');
  });

  it('an oversized request is TOO_LARGE', async () => {
    const r = await ask(new Uint8Array(100_000));
    expect(r.code).toBe('TOO_LARGE');
    expect(r.error?.message).toMatch(/100000 bytes exceeds the limit of 65536/);
  });

  it('another model version is MODEL_MISMATCH', async () => {
    const r = await ask(encodeRequest(validRequest(m, { modelVersion: '0000000000000000', requestId: 'v1' })));
    expect(r.code).toBe('MODEL_MISMATCH');
    expect(r.requestId).toBe('v1');
  });

  it('a state tensor of the wrong shape is BAD_REQUEST naming the tensor', async () => {
    const req = validRequest(m);
    req.state![0]!.shape = [1, 2, 3];
    const r = await ask(encodeRequest(req));
    expect(r.code).toBe('BAD_REQUEST');
    expect(r.error?.message).toMatch(/state0/);
  });

  it('a request whose deadline has passed is EXPIRED', async () => {
    const r = await ask(encodeRequest(validRequest(m, { deadlineUnixMs: Date.now() - 1000 })));
    expect(r.code).toBe('EXPIRED');
  });

  it('after all that, a valid request gets a prediction', async () => {
    const r = await ask(encodeRequest(validRequest(m, { requestId: 'ok-1' })));
    expect(r.code).toBeUndefined();
    expect(r.requestId).toBe('ok-1');
    expect(r.prediction?.exit).toBeGreaterThanOrEqual(2);
    expect(r.prediction?.className).toBe(m.manifest.classes[r.prediction!.classIndex!]);
    expect(worker.process.exitCode).toBeNull();
  });

  it('answers NATS service PING, INFO and STATS, and its health endpoints', async () => {
    const client = new Svcm(nc).client();
    const pings = [];
    for await (const p of await client.ping('cascade-worker')) pings.push(p);
    expect(pings.map((p) => p.metadata?.worker)).toContain('wbad');
    const infos = [];
    for await (const i of await client.info('cascade-worker')) infos.push(i);
    const endpoints = infos.find((i) => i.metadata?.worker === 'wbad')?.endpoints.map((e) => e.subject);
    expect(endpoints).toEqual([`${subject}.${m.manifest.version}`, subject]);
    const stats = [];
    for await (const st of await client.stats('cascade-worker')) stats.push(st);
    expect(stats.find((st) => st.metadata?.worker === 'wbad')?.endpoints?.[1]?.num_requests).toBeGreaterThan(0);
    const base = `http://127.0.0.1:${worker.metricsPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('a request without a reply subject is served, and its reply counted apart as not sent', async () => {
    nc.publish(subject, encodeRequest(validRequest(m, { requestId: 'no-reply' })));
    await nc.flush();
    const base = `http://127.0.0.1:${worker.metricsPort}/metrics`;
    let failed: number | undefined;
    for (let i = 0; i < 50 && !failed; i++) {
      failed = metricValue(await (await fetch(base)).text(), 'cascade_worker_replies_failed_total', { status: 'ok' });
      if (!failed) await new Promise((r) => setTimeout(r, 100));
    }
    expect(failed).toBe(1);
    expect(worker.process.exitCode).toBeNull();
  });

  it('/metrics counts every reply by status', async () => {
    const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    const count = (status: string) => metricValue(text, 'cascade_worker_requests_total', { status, worker: 'wbad' });
    expect(count('BAD_REQUEST')).toBe(3);
    expect(count('TOO_LARGE')).toBe(1);
    expect(count('MODEL_MISMATCH')).toBe(1);
    expect(count('EXPIRED')).toBe(1);
    expect(count('ok')).toBe(1);
    expect(count('ok')).toBe(1); // the reply that could not be sent is not among them ...
    expect(metricValue(text, 'cascade_worker_batch_size_count')).toBe(2); // ... though its request was computed
    expect(metricValue(text, 'cascade_worker_queue_depth')).toBe(0);
    expect(metricValue(text, 'cascade_nats_connected')).toBe(1);
    expect(text).toMatch(/cascade_build_info\{[^}]*component="cloud"[^}]*\} 1/);
  });
});

describe('worker - load and shutdown', () => {
  it('a full queue answers OVERLOADED at once', async () => {
    const w = await startWorker({
      model: MODEL,
      nats: nats.url,
      id: 'wfull',
      extra: ['--threads', '1', '--queue-limit', '4', '--max-delay-ms', '2000', '--max-batch', '64'],
    });
    try {
      const replies = await Promise.all(Array.from({ length: 12 }, () => ask(encodeRequest(validRequest(m)))));
      const codes = replies.map((r) => r.code ?? 'ok');
      expect(codes.filter((c) => c === 'ok')).toHaveLength(4);
      expect(codes.filter((c) => c === 'OVERLOADED')).toHaveLength(8);
    } finally {
      await w.stop();
    }
  });

  it('SIGTERM drains: every queued request is answered, then the worker exits 0', async () => {
    const w = await startWorker({
      model: MODEL,
      nats: nats.url,
      id: 'wdrain',
      extra: ['--threads', '1', '--max-delay-ms', '5000', '--max-batch', '64'],
    });
    const pending = Array.from({ length: 30 }, (_, i) => ask(encodeRequest(validRequest(m, { requestId: `d${i}` }))));
    // All 30 queued, waiting for the batch delay: read from the worker's own gauge, not assumed after a pause.
    const depth = async () =>
      metricValue(
        await (await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`)).text(),
        'cascade_worker_queue_depth',
      );
    while ((await depth()) !== 30) await new Promise((r) => setTimeout(r, 20));
    const exit = w.stop('SIGTERM');
    const replies = await Promise.all(pending);
    expect(replies.map((r) => r.code ?? 'ok')).toEqual(new Array(30).fill('ok'));
    expect(new Set(replies.map((r) => r.requestId)).size).toBe(30);
    expect(await exit).toBe(0);
    expect(w.log()).toMatch(/"worker_draining"/);
    await expect(nc.request(subject, encodeRequest(validRequest(m)), { timeout: 2000 })).rejects.toThrow();
  });
});

describe('worker - versioned subjects', () => {
  let worker: WorkerProcess;
  beforeAll(async () => {
    worker = await startWorker({ model: MODEL, nats: nats.url, id: 'wver', extra: ['--threads', '1'] });
  });
  afterAll(async () => {
    expect(await worker.stop()).toBe(0);
  });

  it("the version's own subject is served, beside the model's subject of older clients", async () => {
    const versioned = subjects.infer(m.manifest.name, m.manifest.version);
    expect(versioned).toBe(`${subject}.${m.manifest.version}`);
    const r = decodeReply((await nc.request(versioned, encodeRequest(validRequest(m)), { timeout: 10_000 })).data);
    expect(r.prediction).toBeTruthy();
    await expect(
      nc.request(subjects.infer(m.manifest.name, '0000000000000000'), encodeRequest(validRequest(m)), {
        timeout: 5000,
      }),
    ).rejects.toThrow(/no responders/i);
  });

  it("an edge on a version no worker serves gets MODEL_MISMATCH from the model's subject, not silence", async () => {
    // A copy of the model that claims another version: its offloads find no worker on their own subject, ask on the
    // model's, and are refused there with a coded error that each result names.
    const dir = mkdtempSync(join(tmpdir(), 'cascade-other-version-'));
    const manifest = { ...m.manifest, version: '0000000000000000' };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    for (const s of m.manifest.stages) copyFileSync(join(MODEL, s.file), join(dir, s.file));
    const results = await runEdge({ model: dir, nats: nats.url, id: 'cam-old', operatingPoint: 'accurate', fleet: false, shadowRate: 0 }, 60); // prettier-ignore
    const hard = results.filter((x) => x.outcome !== 'exited');
    expect(hard.length).toBeGreaterThan(0);
    expect(new Set(hard.map((x) => x.fallback_reason))).toEqual(new Set(['MODEL_MISMATCH']));
    expect(hard[0]!.error).toMatch(/this worker serves ranet-cifar10@/);
  });
});
