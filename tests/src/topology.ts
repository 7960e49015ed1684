// NATS topologies from the shipped configuration (deploy/nats), on loopback ports: a cloud cluster of three nodes
// (cluster.conf, which includes nats.conf) and camera sites joined to it as leaf nodes (site.conf). Only the
// addresses and ports are overridden; users, permissions, JetStream and the cluster and leaf settings are the files'.
import { stopChild, track } from '@cascade/demo';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, REPO, requireProgram } from './harness.js';

export const PASSWORDS = {
  CASCADE_WORKER_PASSWORD: 'worker-secret-1f9e',
  CASCADE_MONITOR_PASSWORD: 'monitor-secret-77aa',
  CASCADE_EDGE_CAM_1_PASSWORD: 'cam1-secret-0b3c',
  CASCADE_EDGE_CAM_2_PASSWORD: 'cam2-secret-9d2e',
  CASCADE_EDGE_WEB_1_PASSWORD: 'web1-secret-4a7f',
  CASCADE_SITE_SITE_A_PASSWORD: 'site-a-secret-5c1d',
  CASCADE_ROUTE_PASSWORD: 'route-secret-a2f4',
};
export const SITE_CAMERA_PASSWORD = 'site-camera-secret-3e8b';

/** A CA and certificates it signed (for loopback and Compose's service names), for this test process. */
export interface TestPki {
  dir: string;
  ca: string;
  /** A node's certificate and key: good as server and client (routes and leaf links use it both ways). */
  cert: string;
  key: string;
  /** A client's certificate and key, for mutual TLS from a client. */
  clientCert: string;
  clientKey: string;
}

let pki: TestPki | undefined;

/**
 * Makes (once per process) a test CA and the certificates it signed, for `127.0.0.1`, `localhost` and the Compose
 * services' names (nats, nats-2, nats-3, site-a); into `dir` when given.
 */
export function testPki(dir?: string): TestPki {
  if (pki && !dir) return pki;
  requireProgram('openssl');
  const where = dir ?? mkdtempSync(join(tmpdir(), 'cascade-pki-'));
  mkdirSync(where, { recursive: true });
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: where, stdio: 'ignore' });
  if (!existsSync(join(where, 'ca.pem')))
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=cascade-test-ca'); // prettier-ignore
  writeFileSync(join(where, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:nats,DNS:nats-2,DNS:nats-3,DNS:site-a\n'); // prettier-ignore
  const issue = (name: string, cn: string) => {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`); // prettier-ignore
    ssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', 'san.ext'); // prettier-ignore
    // Test keys only: readable by the containers' users too (the Compose test mounts them).
    for (const f of [`${name}.pem`, `${name}.key`]) chmodSync(join(where, f), 0o644);
  };
  issue('server', 'cascade-node');
  issue('client', 'cascade-client');
  chmodSync(join(where, 'ca.pem'), 0o644);
  chmodSync(where, 0o755);
  const file = (f: string) => join(where, f);
  const made = {
    dir: where,
    ca: file('ca.pem'),
    cert: file('server.pem'),
    key: file('server.key'),
    clientCert: file('client.pem'),
    clientKey: file('client.key'),
  };
  if (!dir) pki = made;
  return made;
}

/** Flags that log a worker into the shipped config. */
export const WORKER_LOGIN = ['--nats-user', 'worker', '--nats-password', PASSWORDS.CASCADE_WORKER_PASSWORD];
/** Connection options of the monitor user (reads the results stream). */
export const MONITOR_LOGIN = {
  user: 'monitor',
  pass: PASSWORDS.CASCADE_MONITOR_PASSWORD,
  inboxPrefix: '_INBOX_monitor',
};

/** One nats-server process of a topology; `restart()` brings it back on the same ports and store. */
export interface NatsNode {
  name: string;
  url: string;
  monitorPort: number;
  /** Where leaf nodes connect (cloud nodes only). */
  leafPort?: number;
  /** The browser edges' WebSocket listener (startShippedNats). */
  wsUrl?: string;
  proc: ChildProcess;
  log: () => string;
  stop(signal?: NodeJS.Signals): Promise<void>;
  restart(): Promise<void>;
  /** Resolves once GET /healthz answers 200 (for a cloud node: JetStream has a meta leader and its streams are current). */
  healthy(timeoutMs?: number): Promise<void>;
}

const CONFIG_DIR = join(REPO, 'deploy/nats');

function configCopy(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-nats-conf-'));
  for (const f of ['nats.conf', 'cluster.conf', 'site.conf']) copyFileSync(join(CONFIG_DIR, f), join(dir, f));
  return dir;
}

async function launch(
  name: string,
  conf: string,
  args: string[],
  env: Record<string, string>,
  port: number,
  monitorPort: number,
  leafPort?: number,
): Promise<NatsNode> {
  requireProgram('nats-server');
  let proc!: ChildProcess;
  let log = '';
  const start = async () => {
    log = '';
    proc = track(
      spawn('nats-server', ['-c', conf, ...args], {
        env: { ...process.env, ...PASSWORDS, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server ${name} did not start in 15 s:\n${log}`)), 15_000);
      const onData = (d: Buffer) => {
        log += d.toString();
        if (log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`nats-server ${name} exited ${code}:\n${log}`));
      });
    });
  };
  await start();
  return {
    name,
    url: `nats://127.0.0.1:${port}`,
    monitorPort,
    ...(leafPort ? { leafPort } : {}),
    get proc() {
      return proc;
    },
    log: () => log,
    stop: async (signal = 'SIGTERM') => void (await stopChild(proc, signal)),
    restart: start,
    healthy: async (timeoutMs = 30_000) => {
      const until = performance.now() + timeoutMs;
      for (;;) {
        const ok = await fetch(`http://127.0.0.1:${monitorPort}/healthz`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) return;
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nats-server ${name} exited:\n${log}`);
        if (performance.now() > until) throw new Error(`nats-server ${name} not healthy in ${timeoutMs} ms:\n${log}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
  };
}

/** One nats-server from a shipped config file (`nats.conf`, `nats-tls.conf`, ...) on free loopback ports. */
export async function startShippedNats(config: string, env: Record<string, string> = {}): Promise<NatsNode> {
  let ws = '';
  const [node] = await withFreshPorts(async () => {
    const port = await freePort();
    const monitor = await freePort();
    const args = ['-a', '127.0.0.1', '-p', String(port), '-m', String(monitor)];
    const store = mkdtempSync(join(tmpdir(), 'cascade-js-'));
    ws = String(await freePort()); // the browser edges' WebSocket listener (CASCADE_NATS_WS_PORT)
    const vars = { CASCADE_NATS_STORE_DIR: store, CASCADE_NATS_WS_PORT: ws, ...env };
    return [launch(config, join(CONFIG_DIR, config), args, vars, port, monitor)];
  });
  node!.wsUrl = `ws://127.0.0.1:${ws}`;
  return node!;
}

export interface Cloud {
  nodes: NatsNode[];
  /** Every node's client URL, comma-separated: the seed list clients take. */
  urls: string;
  stop(): Promise<void>;
}

export interface CloudOptions {
  /**
   * The host:port sites reach node `i`'s leaf port by (its CASCADE_NATS_LEAF_ADVERTISE), given the port: e.g. a proxy
   * in front of it. @default the leaf port itself
   */
  leafAddress?: (i: number, leafPort: number) => Promise<string>;
}

/**
 * Starts the processes `start` makes; when one fails because a port picked as free was taken meanwhile (another test
 * running in parallel), stops the others and tries again with new ports.
 */
async function withFreshPorts(start: () => Promise<Promise<NatsNode>[]>): Promise<NatsNode[]> {
  for (let attempt = 1; ; attempt++) {
    const settled = await Promise.allSettled(await start());
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed) return settled.map((r) => (r as PromiseFulfilledResult<NatsNode>).value);
    for (const r of settled) if (r.status === 'fulfilled') await r.value.stop('SIGKILL');
    if (attempt >= 3 || !/address already in use/.test(String(failed.reason))) throw failed.reason;
  }
}

/** Three cloud nodes from deploy/nats/cluster.conf, routed to each other, with JetStream healthy on each. */
export async function startCloud(options: CloudOptions = {}): Promise<Cloud> {
  // Healthy inside the retry: a node binds its route port after it says it is ready, and a port taken meanwhile
  // (picked free, then used by another process) ends it there.
  const nodes = await withFreshPorts(async () =>
    (await launchCloud(options)).map((p) => p.then(async (n) => (await n.healthy(), n))),
  );
  return {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    stop: async () => void (await Promise.all(nodes.map((n) => n.stop('SIGKILL')))),
  };
}

async function launchCloud(options: CloudOptions): Promise<Promise<NatsNode>[]> {
  const dir = configCopy();
  const tls = testPki();
  const ports = await Promise.all(
    [0, 1, 2].map(async () => ({
      client: await freePort(),
      monitor: await freePort(),
      route: await freePort(),
      leaf: await freePort(),
      ws: await freePort(),
    })),
  );
  const routes = Object.fromEntries(
    ports.map((p, i) => [
      `CASCADE_NATS_ROUTE_${i + 1}`,
      `nats-route://route:${PASSWORDS.CASCADE_ROUTE_PASSWORD}@127.0.0.1:${p.route}`,
    ]),
  );
  const advertised = await Promise.all(
    ports.map((p, i) => options.leafAddress?.(i, p.leaf) ?? Promise.resolve(`127.0.0.1:${p.leaf}`)),
  );
  return ports.map((p, i) => {
    const name = `nats-${i}`;
    const conf = join(dir, `${name}.conf`);
    writeFileSync(
      conf,
      ['include ./cluster.conf', 'host: 127.0.0.1', `port: ${p.client}`, `http_port: ${p.monitor}`].join('\n'),
    );
    const store = join(dir, `${name}-jetstream`);
    mkdirSync(store);
    return launch(
      name,
      conf,
      ['--cluster', `nats://127.0.0.1:${p.route}`],
      {
        ...routes,
        CASCADE_NATS_NAME: name,
        CASCADE_NATS_STORE_DIR: store,
        CASCADE_NATS_LEAF_ADVERTISE: advertised[i]!,
        CASCADE_NATS_LEAF_LISTEN: `127.0.0.1:${p.leaf}`,
        CASCADE_NATS_TLS_CERT: tls.cert,
        CASCADE_NATS_TLS_KEY: tls.key,
        CASCADE_NATS_TLS_CA: tls.ca,
        CASCADE_NATS_WS_PORT: String(p.ws),
      },
      p.client,
      p.monitor,
      p.leaf,
    );
  });
}

/**
 * A camera site's leaf nats-server from deploy/nats/site.conf, joined to the cloud through `hubs` (host:port of
 * cloud leaf ports, or of proxies in front of them; one to three). Resolves once its leaf link is up.
 */
export async function startSite(name: string, hubs: string[]): Promise<NatsNode> {
  const [site] = await withFreshPorts(async () => [launchSite(name, hubs)]);
  for (let i = 0; !(await leafConnected(site!)); i++) {
    if (i > 100) {
      await site!.stop('SIGKILL');
      throw new Error(`${name} did not join the cloud in 10 s:\n${site!.log()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return site!;
}

async function launchSite(name: string, hubs: string[]): Promise<NatsNode> {
  const dir = configCopy();
  const port = await freePort();
  const monitor = await freePort();
  const conf = join(dir, `${name}.conf`);
  writeFileSync(conf, ['include ./site.conf', 'host: 127.0.0.1', `port: ${port}`, `http_port: ${monitor}`].join('\n'));
  const password =
    PASSWORDS[`CASCADE_SITE_${name.toUpperCase().replace(/-/g, '_')}_PASSWORD` as keyof typeof PASSWORDS];
  const urls = [0, 1, 2].map((i) => `nats-leaf://${name}:${password}@${hubs[i % hubs.length]}`);
  return launch(
    name,
    conf,
    [],
    {
      CASCADE_SITE_NAME: name,
      CASCADE_SITE_CAMERA_PASSWORD: SITE_CAMERA_PASSWORD,
      CASCADE_SITE_HUB_1: urls[0]!,
      CASCADE_SITE_HUB_2: urls[1]!,
      CASCADE_SITE_HUB_3: urls[2]!,
      CASCADE_SITE_TLS_CERT: testPki().cert,
      CASCADE_SITE_TLS_KEY: testPki().key,
      CASCADE_SITE_TLS_CA: testPki().ca,
    },
    port,
    monitor,
  );
}

/** Whether the site's leaf connection to the cloud is up (GET /leafz). */
export async function leafConnected(site: NatsNode): Promise<boolean> {
  const r = await fetch(`http://127.0.0.1:${site.monitorPort}/leafz`).then(
    (x) => x.json() as Promise<{ leafnodes: number }>,
  );
  return r.leafnodes > 0;
}
