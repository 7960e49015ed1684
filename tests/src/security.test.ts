import { startWorker } from '@cascade/demo';
import { readResults, type EdgeResult } from '@cascade/edge';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, runEdge } from './harness.js';
import { PASSWORDS, startShippedNats, testPki, type NatsNode, type TestPki } from './topology.js';

function secretFile(dir: string, name: string, value: string): string {
  const path = join(dir, name);
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return path;
}

async function runCamera(
  url: string,
  natsAuth: Record<string, string>,
  id = 'cam-1',
  limit = 150,
): Promise<EdgeResult[]> {
  return runEdge({ model: MODEL, nats: url, id, operatingPoint: 'accurate', timeoutMs: 5000, natsAuth }, limit);
}

const dir = mkdtempSync(join(tmpdir(), 'cascade-sec-'));

describe('nats security - shipped config with per-role credentials', () => {
  let server: NatsNode;
  let monitor: NatsConnection;
  beforeAll(async () => {
    server = await startShippedNats('nats.conf');
    monitor = await connect({
      servers: server.url,
      user: 'monitor',
      pass: PASSWORDS.CASCADE_MONITOR_PASSWORD,
      inboxPrefix: '_INBOX_monitor',
    });
  });
  afterAll(async () => {
    await monitor?.close();
    await server?.stop();
  });

  it('a wrong password is refused', async () => {
    await expect(connect({ servers: server.url, user: 'cam-1', pass: 'guess' })).rejects.toThrow(/Authorization/i);
    await expect(connect({ servers: server.url })).rejects.toThrow(/Authorization/i);
  });

  it('an edge credential cannot subscribe to inference subjects', async () => {
    const edge = await connect({
      servers: server.url,
      user: 'cam-1',
      pass: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD,
      inboxPrefix: '_INBOX.cam-1',
    });
    const errors: string[] = [];
    void (async () => {
      for await (const s of edge.status())
        if (s.type === 'error') errors.push(String((s as { error?: Error }).error?.message ?? ''));
    })();
    const sub = edge.subscribe('cascade.v1.infer.ranet-cifar10');
    const got: unknown[] = [];
    void (async () => {
      try {
        for await (const m of sub) got.push(m);
      } catch (err) {
        errors.push((err as Error).message);
      }
    })();
    await edge.flush();
    // Another edge sends an inference request; the first edge must not see it.
    const other = await connect({
      servers: server.url,
      user: 'cam-2',
      pass: PASSWORDS.CASCADE_EDGE_CAM_2_PASSWORD,
      inboxPrefix: '_INBOX.cam-2',
    });
    other.publish('cascade.v1.infer.ranet-cifar10', new Uint8Array([1]));
    await other.flush();
    await new Promise((r) => setTimeout(r, 300));
    expect(got).toHaveLength(0);
    expect(errors.join(' ')).toMatch(/Permissions Violation for Subscription to "cascade.v1.infer.ranet-cifar10"/);
    await Promise.all([edge.close(), other.close()]);
  });

  it("an edge credential cannot publish another edge's results, only its own", async () => {
    const seen: string[] = [];
    const sub = monitor.subscribe('cascade.v1.results.>', { callback: (_e, m) => void seen.push(m.subject) });
    await monitor.flush();
    const edge = await connect({
      servers: server.url,
      user: 'cam-1',
      pass: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD,
      inboxPrefix: '_INBOX.cam-1',
    });
    edge.publish('cascade.v1.results.cam-2', new Uint8Array([1]));
    edge.publish('cascade.v1.results.cam-1', new Uint8Array([2]));
    await edge.flush();
    await new Promise((r) => setTimeout(r, 300));
    sub.unsubscribe();
    await edge.close();
    expect(seen).toEqual(['cascade.v1.results.cam-1']);
  });

  it('the cascade runs with the edge and worker credentials, which never reach the logs', async () => {
    const pw = secretFile(dir, 'worker.pw', PASSWORDS.CASCADE_WORKER_PASSWORD);
    const w = await startWorker({
      model: MODEL,
      nats: server.url,
      id: 'sec-w',
      extra: ['--threads', '1', '--nats-user', 'worker', '--nats-password-file', pw],
    });
    try {
      const results = await runCamera(server.url, { user: 'cam-1', password: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD });
      expect(results).toHaveLength(150);
      expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(5);
      expect(results.filter((r) => r.outcome === 'fallback')).toEqual([]);
      // The worker created the results stream; the edge's results are there, read with the monitor's credentials.
      const stored = new Set<number>();
      await readResults(monitor, { edge: 'cam-1' }, (r) => void stored.add(Number(r.sequence)));
      expect(stored.size).toBe(150);
    } finally {
      expect(await w.stop()).toBe(0);
    }
    expect(w.log()).not.toContain(PASSWORDS.CASCADE_WORKER_PASSWORD);
  });
});

describe('nats security - TLS with a test CA', () => {
  let server: NatsNode;
  let pki: TestPki;

  beforeAll(async () => {
    pki = testPki();
    server = await startShippedNats('nats-tls.conf', {
      CASCADE_NATS_TLS_CERT: pki.cert,
      CASCADE_NATS_TLS_KEY: pki.key,
      CASCADE_NATS_TLS_CA: pki.ca,
    });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a plaintext client is refused', async () => {
    await expect(
      connect({
        servers: server.url,
        user: 'monitor',
        pass: PASSWORDS.CASCADE_MONITOR_PASSWORD,
        tls: null,
        timeout: 3000,
      }),
    ).rejects.toThrow();
  });

  it('edge and worker talk over TLS', async () => {
    const tls = ['--nats-ca', pki.ca, '--nats-cert', pki.clientCert, '--nats-key', pki.clientKey];
    const w = await startWorker({
      model: MODEL,
      nats: server.url,
      id: 'tls-w',
      extra: ['--threads', '1', '--nats-user', 'worker', '--nats-password', PASSWORDS.CASCADE_WORKER_PASSWORD, ...tls],
    });
    try {
      const results = await runCamera(server.url, {
        user: 'cam-1',
        password: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD,
        ca: pki.ca,
        cert: pki.clientCert,
        key: pki.clientKey,
      });
      expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(5);
      expect(results.filter((r) => r.outcome === 'fallback')).toEqual([]);
    } finally {
      expect(await w.stop()).toBe(0);
    }
    expect(w.log()).not.toContain(PASSWORDS.CASCADE_WORKER_PASSWORD);
  });
});
