// Fleet identity in operator mode, on a current nats-server (scripts/setup test builds v2.15 from its Go module):
// `cascade auth init` makes the operator, accounts and credentials, `cascade device add SITE.AGENT` issues a device
// that may do what its identity allows and nothing else, and `cascade device revoke` has the running server refuse
// it within seconds while the other devices keep streaming. No server file changes after init.
import { startNatsServer, startWorker, type LocalNats, type WorkerProcess } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeResult } from '@cascade/edge';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascadeCommand, MODEL, REPO, SAMPLES, until } from './harness.js';

const NATS_SERVER = join(REPO, '.tools/bin/nats-server-current');
const dir = mkdtempSync(join(tmpdir(), 'cascade-auth-'));
const creds = (name: string) => join(dir, name);

/** A connection as a device or role; `errors` collects the server's permission refusals. */
async function as(url: string, file: string, inbox: string): Promise<{ nc: NatsConnection; errors: string[] }> {
  const nc = await connect({ servers: url, authenticator: credsAuthenticator(readFileSync(file)), inboxPrefix: inbox, maxReconnectAttempts: 0 }); // prettier-ignore
  const errors: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') errors.push(String((s as { error?: Error }).error?.message)); // prettier-ignore
  })();
  return { nc, errors };
}

describe('fleet identity: devices issued and revoked by command (operator mode, nats-server 2.15)', () => {
  let server: LocalNats;
  let worker: WorkerProcess;
  beforeAll(async () => {
    if (!existsSync(NATS_SERVER)) throw new Error(`${NATS_SERVER} is missing: run scripts/setup test`);
    const init = await cascadeCommand('nats://127.0.0.1:1', ['auth', 'init', dir]);
    expect(init.code, init.stderr).toBe(0);
    server = await startNatsServer({
      binary: NATS_SERVER,
      extraConfig: readFileSync(join(dir, 'server.conf'), 'utf8'),
    });
    worker = await startWorker({ model: MODEL, nats: server.url, id: 'w-auth', extra: ['--nats-creds', creds('worker.creds'), '--threads', '1'] }); // prettier-ignore
  }, 60_000);
  afterAll(async () => {
    await worker?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('init writes the seeds 0600 and a server configuration; a password or a device that was never issued is refused', async () => {
    for (const f of ['operator.nk', 'account.nk', 'account-signing.nk', 'sys.creds', 'worker.creds', 'monitor.creds'])
      expect(statSync(creds(f)).mode & 0o777, f).toBe(0o600);
    await expect(connect({ servers: server.url, user: 'cam-1', pass: 'x', maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization/i); // prettier-ignore
    await expect(connect({ servers: server.url, maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization/i);
  });

  it('a device added by command streams as its cameras, and every subject outside its identity is refused', async () => {
    for (const id of ['site-a.agent-1', 'site-b.agent-1']) {
      const r = await cascadeCommand(server.url, ['device', 'add', id, '--auth', dir]);
      expect(r.code, r.stderr).toBe(0);
    }
    // The agent runs as its camera site-a.agent-1.cam-1, with the device's credentials: hard frames reach the worker.
    const agent = await EdgeAgent.create({ model: MODEL, nats: server.url, id: 'site-a.agent-1.cam-1', natsAuth: { creds: creds('devices/site-a.agent-1.creds') }, metricsPort: -1, threads: 1 }, () => undefined); // prettier-ignore
    const results: EdgeResult[] = [];
    await agent.run(await openSource(SAMPLES, { size: 32, limit: 60 }), (r) => results.push(r));
    await agent.shutdown();
    expect(results).toHaveLength(60);
    expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(0);
    expect(results.filter((r) => r.outcome === 'fallback')).toEqual([]);
    expect(agent.resultsPending).toBe(0);

    const { nc, errors } = await as(server.url, creds('devices/site-a.agent-1.creds'), '_INBOX.site-a.agent-1.cam-1');
    const monitor = await as(server.url, creds('monitor.creds'), '_INBOX_monitor');
    const seen: string[] = [];
    monitor.nc.subscribe('cascade.v1.results.>', { callback: (_e, m) => void seen.push(m.subject) });
    await monitor.nc.flush();
    const forbidden = {
      publish: [
        'cascade.v1.results.site-a.agent-2.cam-1', // another agent of its site
        'cascade.v1.results.site-b.agent-1.cam-1', // another site
        '$KV.cascade-edges.site-b.agent-1.cam-1', // another camera's registry entry
        '$KV.cascade-config.edges.default', // the fleet's settings
        '$JS.API.STREAM.DELETE.CASCADE_RESULTS',
      ],
      subscribe: ['_INBOX.site-b.agent-1.>', '_INBOX.site-a.agent-2.>', 'cascade.v1.results.>', 'cascade.v1.infer.>'],
    };
    for (const s of forbidden.publish) nc.publish(s, new Uint8Array([1]));
    for (const s of forbidden.subscribe) nc.subscribe(s, { callback: () => undefined });
    nc.publish('cascade.v1.results.site-a.agent-1.cam-2', new Uint8Array([2])); // its own second camera: allowed
    await nc.flush();
    await until('the refusals', () => errors.length >= forbidden.publish.length + forbidden.subscribe.length, 5000, 50);
    for (const s of forbidden.publish)
      expect(errors.join('\n')).toContain(`Permissions Violation for Publish to "${s}"`);
    for (const s of forbidden.subscribe)
      expect(errors.join('\n')).toContain(`Permissions Violation for Subscription to "${s}"`);
    await until('its own result', () => seen.includes('cascade.v1.results.site-a.agent-1.cam-2'), 5000, 50);
    expect(seen.filter((s) => !s.startsWith('cascade.v1.results.site-a.agent-1.'))).toEqual([]);
    await nc.close();
    await monitor.nc.close();
  }, 120_000);

  it('a revoked device is refused within 5 s, without a restart, while another keeps streaming; no secret in the registry', async () => {
    const a = await as(server.url, creds('devices/site-a.agent-1.creds'), '_INBOX.site-a.agent-1.cam-1');
    const b = await as(server.url, creds('devices/site-b.agent-1.creds'), '_INBOX.site-b.agent-1.cam-1');
    let bSent = 0;
    const stream = setInterval(() => {
      b.nc.publish('cascade.v1.results.site-b.agent-1.cam-1', new Uint8Array([bSent++ % 256]));
    }, 20);
    const closed = a.nc.closed().then(() => performance.now());
    const started = performance.now();
    const r = await cascadeCommand(server.url, ['device', 'revoke', 'site-a.agent-1', '--auth', dir]);
    expect(r.code, r.stderr).toBe(0);
    const closedAt = await Promise.race([closed, new Promise<number>((res) => setTimeout(() => res(-1), 5000))]);
    const seconds = (closedAt - started) / 1000;
    console.log(`revoked device's connection closed ${seconds.toFixed(2)} s after cascade device revoke started`);
    expect(closedAt).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(5);
    await expect(as(server.url, creds('devices/site-a.agent-1.creds'), '_INBOX.site-a.agent-1.cam-1')).rejects.toThrow(/revoked|Authorization/i); // prettier-ignore
    // The other device was never cut off.
    const before = bSent;
    await new Promise((res) => setTimeout(res, 500));
    clearInterval(stream);
    expect(b.nc.isClosed()).toBe(false);
    expect(bSent).toBeGreaterThan(before);
    await b.nc.flush();
    await b.nc.close();
    // The registry of devices holds public keys and dates, never a seed or a JWT.
    const ls = await cascadeCommand(server.url, ['device', 'ls', '--json', '--nats-creds', creds('monitor.creds')]);
    expect(ls.code, ls.stderr).toBe(0);
    const devices = JSON.parse(ls.stdout) as { id: string; revoked_unix_ms?: number }[];
    expect(devices.map((d) => [d.id, d.revoked_unix_ms !== undefined])).toEqual([['site-a.agent-1', true], ['site-b.agent-1', false]]); // prettier-ignore
    const monitor = await as(server.url, creds('monitor.creds'), '_INBOX_monitor');
    const kv = await new Kvm(monitor.nc).open('cascade-devices');
    for await (const key of await kv.keys()) {
      const text = (await kv.get(key))!.string();
      expect(text).not.toMatch(/SUA|SOA|SAA|eyJ/); // NKey seeds (user, operator, account) or a JWT
    }
    await monitor.nc.close();
  }, 60_000);
});
