// Shopify's toxiproxy (a real fault-injecting TCP proxy), driven over its HTTP API. scripts/setup test builds it
// into .tools/bin/toxiproxy-server; CASCADE_TOXIPROXY names another binary.
import { stopChild, track } from '@cascade/demo';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { freePort, REPO } from './harness.js';

export const TOXIPROXY_BIN = process.env.CASCADE_TOXIPROXY ?? `${REPO}.tools/bin/toxiproxy-server`;

export interface Proxy {
  name: string;
  /** host:port clients connect to instead of the upstream. */
  listen: string;
  /** Adds a toxic to one direction (downstream: towards the client; upstream: towards the server). */
  toxic(
    name: string,
    type: 'latency' | 'bandwidth' | 'timeout' | 'reset_peer',
    stream: 'upstream' | 'downstream',
    attributes: Record<string, number>,
  ): Promise<void>;
  /** Removes every toxic. */
  clear(): Promise<void>;
  /** Disabled, it closes every connection through it and refuses new ones: the link is down. */
  setEnabled(enabled: boolean): Promise<void>;
}

export interface Toxiproxy {
  proxy(name: string, upstream: string): Promise<Proxy>;
  stop(): Promise<void>;
}

export async function startToxiproxy(): Promise<Toxiproxy> {
  if (!existsSync(TOXIPROXY_BIN))
    throw new Error(`toxiproxy is not installed at ${TOXIPROXY_BIN}: run scripts/setup test (it builds it with Go)`);
  const port = await freePort();
  const proc = track(spawn(TOXIPROXY_BIN, ['-host', '127.0.0.1', '-port', String(port)], { stdio: 'ignore' }));
  const api = `http://127.0.0.1:${port}`;
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${api}${path}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    if (!r.ok) throw new Error(`toxiproxy ${method} ${path}: ${r.status} ${await r.text()}`);
    return r.status === 204 ? undefined : ((await r.json()) as Record<string, unknown>);
  };
  for (let i = 0; ; i++) {
    if (await fetch(`${api}/version`).then((r) => r.ok, () => false)) break; // prettier-ignore
    if (i > 100) throw new Error('toxiproxy did not answer in 10 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proxy: async (name, upstream) => {
      const listen = `127.0.0.1:${await freePort()}`;
      await call('DELETE', `/proxies/${name}`).catch(() => undefined); // made again (a retried start): replace it
      await call('POST', '/proxies', { name, listen, upstream, enabled: true });
      const toxics = new Set<string>();
      return {
        name,
        listen,
        toxic: async (toxic, type, stream, attributes) => {
          await call('POST', `/proxies/${name}/toxics`, { name: toxic, type, stream, toxicity: 1, attributes });
          toxics.add(toxic);
        },
        clear: async () => {
          for (const t of toxics) await call('DELETE', `/proxies/${name}/toxics/${t}`);
          toxics.clear();
        },
        setEnabled: async (enabled) => void (await call('POST', `/proxies/${name}`, { enabled })),
      };
    },
    stop: async () => void (await stopChild(proc, 'SIGKILL')),
  };
}
