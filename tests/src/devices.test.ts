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
import { cascadeCommand, freePort, MODEL, REPO, SAMPLES, until } from './harness.js';
import { startEdge } from './edge-process.js';
import { testPki } from './topology.js';

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

/** An agent runs as camera `id` with a device's credentials: 60 frames, hard ones answered, every result stored. */
async function streamsAs(url: string, id: string, deviceCreds: string): Promise<void> {
  const agent = await EdgeAgent.create({ model: MODEL, nats: url, id, natsAuth: { creds: deviceCreds }, metricsPort: -1, threads: 1 }, () => undefined); // prettier-ignore
  const results: EdgeResult[] = [];
  await agent.run(await openSource(SAMPLES, { size: 32, limit: 60 }), (r) => results.push(r));
  await agent.shutdown();
  expect(results).toHaveLength(60);
  expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(0);
  expect(results.filter((r) => r.outcome === 'fallback')).toEqual([]);
  expect(agent.resultsPending).toBe(0);
}

describe('fleet identity: devices issued and revoked by command (operator mode, nats-server 2.15)', () => {
  let server: LocalNats;
  let worker: WorkerProcess;
  let leafPort: number;
  beforeAll(async () => {
    if (!existsSync(NATS_SERVER)) throw new Error(`${NATS_SERVER} is missing: run scripts/setup test`);
    const init = await cascadeCommand('nats://127.0.0.1:1', ['auth', 'init', dir]);
    expect(init.code, init.stderr).toBe(0);
    // The cloud's server: deploy/nats/operator.conf as shipped, beside the server.conf init wrote, on free ports, with
    // a leaf port for camera sites: TLS only, each side showing a certificate of the CA.
    leafPort = await freePort();
    const pki = testPki();
    server = await startNatsServer({
      binary: NATS_SERVER,
      files: {
        'operator.conf': readFileSync(join(REPO, 'deploy/nats/operator.conf'), 'utf8'),
        'server.conf': readFileSync(join(dir, 'server.conf'), 'utf8'),
      },
      env: { CASCADE_NATS_STORE_DIR: join(dir, 'jetstream') },
      extraConfig: [
        'include ./operator.conf',
        'host: 127.0.0.1',
        'port: -1',
        'http_port: -1',
        `leafnodes { listen: "127.0.0.1:${leafPort}", tls { cert_file: "${pki.cert}", key_file: "${pki.key}", ca_file: "${pki.ca}", verify: true, timeout: 2 } }`, // prettier-ignore
      ].join('\n'),
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
    await streamsAs(server.url, 'site-a.agent-1.cam-1', creds('devices/site-a.agent-1.creds'));

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

  it("cascade-edge with a device's credentials runs as one of its cameras: --id cam-7 is site-b.agent-1.cam-7; another device's camera is refused before connecting", async () => {
    const deviceCreds = creds('devices/site-b.agent-1.creds');
    const e = startEdge({ url: server.url, id: 'cam-7', frames: 60, fps: 100, extra: ['--nats-creds', deviceCreds] });
    expect(await e.exit, e.stderr()).toBe(0);
    expect(new Set(e.results.map((x) => x.r.edge))).toEqual(new Set(['site-b.agent-1.cam-7']));
    expect(
      e.results.map((x) => x.r.outcome).filter((o) => o !== 'exited'),
      e.stderr(),
    ).toContain('offloaded');
    const other = startEdge({ url: server.url, id: 'site-a.agent-1.cam-1', frames: 1, fps: 100, extra: ['--nats-creds', deviceCreds] }); // prettier-ignore
    expect(await other.exit).toBe(2);
    expect(other.stderr()).toMatch(/--id site-a.agent-1.cam-1 is not a camera of device site-b.agent-1/);
  }, 60_000);

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
  it('a camera site in operator mode: its devices log in there with their own credentials and rights, and one revoked in the cloud is refused at the site within 5 s', async () => {
    const made = await cascadeCommand(server.url, ['auth', 'site', 'site-a', '--auth', dir]);
    expect(made.code, made.stderr).toBe(0);
    for (const f of ['leaf.creds', 'leaf-sys.creds']) expect(statSync(creds(`sites/site-a/${f}`)).mode & 0o777, f).toBe(0o600); // prettier-ignore
    for (const id of ['site-a.agent-2', 'site-a.agent-3']) {
      const r = await cascadeCommand(server.url, ['device', 'add', id, '--auth', dir]);
      expect(r.code, r.stderr).toBe(0);
    }
    // The site's logins are for its leaf links only.
    for (const f of ['leaf.creds', 'leaf-sys.creds'])
      await expect(as(server.url, creds(`sites/site-a/${f}`), '_INBOX.site-a')).rejects.toThrow(/Authorization/i);
    // The site's server: its generated configuration as it is, on free ports, its hubs the cloud's leaf port.
    const hub = `nats-leaf://127.0.0.1:${leafPort}`;
    const pki = testPki();
    const site = await startNatsServer({
      binary: NATS_SERVER,
      jetstream: false,
      extraConfig: [readFileSync(creds('sites/site-a/site.conf'), 'utf8'), 'host: 127.0.0.1', 'port: -1', 'http_port: -1'].join('\n'), // prettier-ignore
      env: { CASCADE_SITE_HUB_1: hub, CASCADE_SITE_HUB_2: hub, CASCADE_SITE_HUB_3: hub, CASCADE_SITE_TLS_CERT: pki.cert, CASCADE_SITE_TLS_KEY: pki.key, CASCADE_SITE_TLS_CA: pki.ca }, // prettier-ignore
    });
    try {
      // A device at the site: once the leaf link is up, its requests reach the cloud's worker (a malformed one gets
      // a coded error back).
      const agent2 = creds('devices/site-a.agent-2.creds');
      const probe = await as(site.url, agent2, '_INBOX.site-a.agent-2.probe');
      await until('the leaf link', async () => {
        try {
          return (await probe.nc.request('cascade.v1.infer.ranet-cifar10', new Uint8Array([1]), { timeout: 500 })).data.length > 0; // prettier-ignore
        } catch {
          return false;
        }
      }, 15_000, 200); // prettier-ignore
      await probe.nc.close();
      // An agent at the site, with its device's credentials: hard frames answered in the cloud, every result stored
      // in the cloud's stream.
      await streamsAs(site.url, 'site-a.agent-2.cam-1', agent2);

      // At the site, a device can do what its identity allows and no more: not another agent's results or inbox.
      const a = await as(site.url, agent2, '_INBOX.site-a.agent-2.cam-1');
      const b = await as(site.url, creds('devices/site-a.agent-3.creds'), '_INBOX.site-a.agent-3.cam-1');
      a.nc.publish('cascade.v1.results.site-a.agent-3.cam-1', new Uint8Array([1]));
      a.nc.subscribe('_INBOX.site-a.agent-3.>', { callback: () => undefined });
      await a.nc.flush();
      await until('the refusals', () => a.errors.length >= 2, 5000, 50);
      expect(a.errors.join('\n')).toContain('Permissions Violation for Publish to "cascade.v1.results.site-a.agent-3.cam-1"'); // prettier-ignore
      expect(a.errors.join('\n')).toContain('Permissions Violation for Subscription to "_INBOX.site-a.agent-3.>"');

      // Revoked in the cloud, the device is cut off at its site, and refused there; the other device keeps going.
      let bSent = 0;
      const stream = setInterval(() => b.nc.publish('cascade.v1.results.site-a.agent-3.cam-1', new Uint8Array([bSent++ % 256])), 20); // prettier-ignore
      const closed = a.nc.closed().then(() => performance.now());
      const started = performance.now();
      const r = await cascadeCommand(server.url, ['device', 'revoke', 'site-a.agent-2', '--auth', dir]);
      expect(r.code, r.stderr).toBe(0);
      const closedAt = await Promise.race([closed, new Promise<number>((res) => setTimeout(() => res(-1), 5000))]);
      const seconds = (closedAt - started) / 1000;
      console.log(`device at a site revoked in the cloud: its connection to the site closed ${seconds.toFixed(2)} s after cascade device revoke started`); // prettier-ignore
      expect(closedAt, 'the site never cut the revoked device off').toBeGreaterThan(0);
      expect(seconds).toBeLessThan(5);
      await expect(as(site.url, agent2, '_INBOX.site-a.agent-2.cam-1')).rejects.toThrow(/revoked|Authorization/i);
      const before = bSent;
      await new Promise((res) => setTimeout(res, 500));
      clearInterval(stream);
      expect(b.nc.isClosed()).toBe(false);
      expect(bSent).toBeGreaterThan(before);
      await b.nc.close();
    } finally {
      await site.stop();
    }
  }, 120_000);
});
