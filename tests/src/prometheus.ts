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
export async function startPrometheus(targets: { edge: number[]; workers: number[] }): Promise<LocalPrometheus> {
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
  const port = await freePort();
  const proc = track(
    spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    ),
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
