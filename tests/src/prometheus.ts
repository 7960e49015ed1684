import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild, track } from '@cascade/demo';
import { freePort, REPO, requireProgram } from './harness.js';

export interface LocalPrometheus {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
}

/**
 * Starts Debian's prometheus with the shipped deploy/prometheus config and rules, its file-discovery targets
 * pointed at the given ports, and a 1 s scrape interval.
 */
export async function startPrometheus(
  targets: { edge: number[]; workers: number[] },
  /** More flags (--web.enable-remote-write-receiver for sites' agents). */
  extra: string[] = [],
): Promise<LocalPrometheus> {
  requireProgram('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'cascade-prom-'));
  cpSync(join(REPO, 'deploy/prometheus'), dir, { recursive: true });
  const config = readFileSync(join(dir, 'prometheus.yml'), 'utf8').replace(
    /(scrape|evaluation)_interval: 15s/g,
    '$1_interval: 1s',
  );
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const sd = (ports: number[]) => JSON.stringify([{ targets: ports.map((p) => `127.0.0.1:${p}`) }]);
  writeFileSync(join(dir, 'targets/edge.json'), sd(targets.edge));
  writeFileSync(join(dir, 'targets/workers.json'), sd(targets.workers));
  writeFileSync(join(dir, 'targets/nats.json'), '[]');
  return launchPrometheus(dir, 'prometheus.yml', [`--storage.tsdb.path=${join(dir, 'data')}`, ...extra]);
}

/**
 * A camera site's Prometheus agent (deploy/prometheus/site/prometheus-agent.yml, 1 s scrapes) scraping the site's
 * edges and writing to `cloud` (a Prometheus with the remote-write receiver). It has no query API: agent mode.
 */
export async function startSiteAgent(site: string, edges: number[], cloud: string): Promise<LocalPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-prom-site-'));
  cpSync(join(REPO, 'deploy/prometheus/site'), dir, { recursive: true });
  const config = readFileSync(join(dir, 'prometheus-agent.yml'), 'utf8')
    .replace('scrape_interval: 15s', 'scrape_interval: 1s')
    .replace(/url: https:\/\/prometheus\.cloud\.example\/api\/v1\/write/, `url: ${cloud}/api/v1/write`);
  writeFileSync(join(dir, 'prometheus-agent.yml'), config);
  writeFileSync(join(dir, 'targets/edge.json'), JSON.stringify([{ targets: edges.map((p) => `127.0.0.1:${p}`) }]));
  return launchPrometheus(dir, 'prometheus-agent.yml', ['--enable-feature=agent,expand-external-labels', `--storage.agent.path=${join(dir, 'wal')}`], { CASCADE_SITE_NAME: site }); // prettier-ignore
}

async function launchPrometheus(
  dir: string,
  file: string,
  flags: string[],
  env: Record<string, string> = {},
): Promise<LocalPrometheus> {
  const port = await freePort();
  const proc = track(
    spawn('prometheus', [`--config.file=${join(dir, file)}`, `--web.listen-address=127.0.0.1:${port}`, ...flags], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...env },
    }),
  );
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null)
      throw new Error(`prometheus exited with code ${proc.exitCode}:\n${log || '(nothing on stderr)'}`);
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (i > 100) throw new Error(`prometheus not ready after 20 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    process: proc,
    stop: async () => void (await stopChild(proc)),
    async query(expr) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { result: never[] } };
      if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
      return body.data!.result;
    },
  };
}
