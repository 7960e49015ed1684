import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/** Histogram buckets fitted to what the default model measured on CPU (seconds and bytes). */
export const BUCKETS = {
  /** Edge stage runs (~0.3-3 ms) up to a slow device. */
  stageSeconds: [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1],
  /** Offload round trips (p50 ~9 ms, p99 ~28 ms on loopback) up to the default 1 s deadline and beyond. */
  offloadSeconds: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  /** Offload payloads: image 3 KB, int8 state 12 KB, fp32 36 KB, later splits up to ~110 KB. */
  bytes: [2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576],
  /** Worker queueing (max delay 2 ms by default) and batch compute. */
  workerSeconds: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  batchSize: [1, 2, 4, 8, 16, 32, 64, 128],
  confidence: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1],
} as const;

/** A registry with process metrics and `cascade_build_info`, labelled with the part's identity. */
export function createRegistry(
  defaultLabels: Record<string, string>,
  build: Record<string, string>,
  /** The process's own metrics (CPU, memory, event loop); off for a registry that shares its process with others. */
  processMetrics = true,
): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(defaultLabels);
  if (processMetrics) collectDefaultMetrics({ register: registry });
  const info = new Gauge({
    name: 'cascade_build_info',
    help: 'Always 1; labels say what runs: component, version, model, model version, execution provider.',
    labelNames: Object.keys(build),
    registers: [registry],
  });
  info.set(build, 1);
  return registry;
}

/**
 * Says what runs now in `cascade_build_info`: one series per entry of `builds` (a worker serving two model versions
 * has two), replacing the ones before. Each entry carries every label createRegistry was given.
 */
export function setBuildInfo(registry: Registry, builds: Record<string, string>[]): void {
  const info = registry.getSingleMetric('cascade_build_info') as Gauge<string>;
  info.reset();
  for (const b of builds) info.set(b, 1);
}

export const CASCADE_VERSION = '0.1.0';

/**
 * Gauges read from one snapshot at scrape time: `read` is called once per gauge and scrape (cache it if it costs),
 * and each gauge takes its value from the snapshot; while `read` gives nothing they read 0 (a ratio of two of them
 * is then NaN, which no alert matches).
 */
export function snapshotGauges<T>(
  registry: Registry,
  read: () => T | undefined | Promise<T | undefined>,
  gauges: readonly (readonly [name: string, help: string, value: (snapshot: T) => number])[],
): void {
  for (const [name, help, value] of gauges)
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const snapshot = await read();
        this.reset();
        if (snapshot !== undefined) this.set(value(snapshot));
      },
    });
}

/** Serves `GET /metrics` (and extra routes) on host:port; port 0 picks a free one. */
export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

export type Route = () => Promise<{ status: number; type: string; body: string }>;

/** A service's states, the same words for the edge agent and the worker. */
export type Lifecycle = 'created' | 'waiting' | 'running' | 'draining' | 'stopped';

/**
 * `/healthz` and `/readyz` for an orchestrator: each check gives undefined when healthy (ready), else why not; the
 * route answers 200 `ok`/`ready`, or 503 with the reason (`failed: …`, `not ready: …`).
 */
export function healthRoutes(checks: {
  alive(): string | undefined;
  ready(): string | undefined;
}): Record<string, Route> {
  const route =
    (check: () => string | undefined, ok: string, not: string): Route =>
    async () => {
      const why = check();
      return {
        status: why === undefined ? 200 : 503,
        type: 'text/plain',
        body: why === undefined ? `${ok}\n` : `${not}: ${why}\n`,
      };
    };
  return { '/healthz': route(checks.alive, 'ok', 'failed'), '/readyz': route(checks.ready, 'ready', 'not ready') };
}

export async function serveMetrics(
  /** A registry, or anything that writes metrics as one (several registries merged). */
  registry: Pick<Registry, 'contentType' | 'metrics'>,
  port: number,
  host = '0.0.0.0',
  routes: Record<string, Route> = {},
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route: Route | undefined =
      path === '/metrics'
        ? async () => ({ status: 200, type: registry.contentType, body: await registry.metrics() })
        : routes[path];
    if (!route || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    route().then(
      (r) => res.writeHead(r.status, { 'content-type': r.type }).end(r.body),
      (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
