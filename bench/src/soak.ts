#!/usr/bin/env node
// Soak: an edge agent (cascade-edge, replaying the samples at a fixed rate) and two workers over a local nats-server
// for N minutes. Samples each process's resident memory and the frames done; reports memory growth per 100,000
// frames after warm-up. Writes bench/results/soak.json and .md (bench/plot.py soak.json draws soak-rss.png).
import { startNatsServer, startWorker, stopChild, track } from '@cascade/demo';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sleep } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  minutes: { type: 'string', help: 'how long (default 30)' },
  fps: { type: 'string', help: 'frames per second offered to the edge (default 500)' },
  'sample-s': { type: 'string', help: 'seconds between memory samples (default 10)' },
  'warmup-frames': { type: 'string', help: 'frames before growth is measured (default 100000)' },
  out: { type: 'string', help: 'results folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const log = (m: string) => process.stderr.write(`[soak] ${m}\n`);

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function framesDone(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^cascade_edge_frames_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

/** Least-squares slope of y on x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den ? num / den : Number.NaN;
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/soak.js [--minutes 30] [--fps 500]', FLAGS));
  const minutes = Number(f.minutes ?? 30);
  const fps = Number(f.fps ?? 500);
  const every = Number(f['sample-s'] ?? 10) * 1000;
  const warmup = Number(f['warmup-frames'] ?? 100_000);
  const model = `${REPO}models/ranet-cifar10`;
  const nats = await startNatsServer();
  const workers = [
    await startWorker({ model, nats: nats.url, id: 'soak-1', extra: ['--threads', '1', '--metrics-port', '-1'] }),
    await startWorker({ model, nats: nats.url, id: 'soak-2', extra: ['--threads', '1', '--metrics-port', '-1'] }),
  ];
  const metricsPort = 19465;
  const edge = track(
    spawn(
      process.execPath,
      [
        `${REPO}packages/edge/dist/cli.js`,
        '--model',
        model,
        '--source',
        `${REPO}samples/cifar10-test-1000.bin`,
        '--nats',
        nats.url,
        '--id',
        'soak-edge',
        '--repeat',
        '0',
        '--max-fps',
        String(fps),
        '--threads',
        '1',
        '--out',
        '/dev/null',
        '--metrics-port',
        String(metricsPort),
        '--metrics-host',
        '127.0.0.1',
        '--outbox-dir',
        mkdtempSync(join(tmpdir(), 'cascade-soak-')),
        '--summary',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    ),
  );
  let edgeLog = '';
  edge.stderr!.on('data', (d: Buffer) => (edgeLog += d.toString()));
  const samples: { t_s: number; frames: number; rss_mib: Record<string, number> }[] = [];
  const started = performance.now();
  try {
    await sleep(3000);
    while (performance.now() - started < minutes * 60_000) {
      const frames = await framesDone(metricsPort);
      const rss = {
        edge: rssMiB(edge.pid!),
        'worker-1': rssMiB(workers[0]!.process.pid!),
        'worker-2': rssMiB(workers[1]!.process.pid!),
        'nats-server': rssMiB(nats.process.pid!),
      };
      const t = (performance.now() - started) / 1000;
      samples.push({
        t_s: Math.round(t),
        frames,
        rss_mib: Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, Math.round(v * 10) / 10])),
      });
      if (samples.length % 6 === 1)
        log(
          `${t.toFixed(0)} s: ${frames} frames (${(frames / t).toFixed(0)}/s), RSS MiB ${JSON.stringify(samples.at(-1)!.rss_mib)}`,
        );
      await sleep(every);
    }
  } finally {
    await stopChild(edge, 'SIGTERM');
    await Promise.all(workers.map((w) => w.stop()));
    await nats.stop();
  }
  const after = samples.filter((s) => s.frames >= warmup);
  const growth: Record<string, number | null> = {};
  for (const name of Object.keys(samples[0]!.rss_mib)) {
    growth[name] =
      after.length >= 3
        ? Math.round(
            slope(
              after.map((s) => s.frames),
              after.map((s) => s.rss_mib[name]!),
            ) *
              100_000 *
              1000,
          ) / 1000
        : null;
  }
  const last = samples.at(-1)!;
  const result = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
    minutes,
    offered_fps: fps,
    frames: last.frames,
    achieved_fps: Math.round(last.frames / last.t_s),
    warmup_frames: warmup,
    growth_mib_per_100k_frames: growth,
    edge_summary: edgeLog
      .split('\n')
      .filter((l) => !l.startsWith('{'))
      .join('\n')
      .trim(),
    samples,
  };
  const dir = f.out ?? `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/soak.json`, `${JSON.stringify(result, null, 1)}\n`);
  writeFileSync(
    `${dir}/soak.md`,
    [
      `# Soak (${result.date.slice(0, 10)}, ${result.machine.cpu}, ${result.machine.cores} cores)`,
      '',
      `${minutes} min, ${fps} frames/s offered, ${result.achieved_fps}/s achieved, ${result.frames} frames through cascade-edge and 2 workers.`,
      `Growth is the least-squares slope of resident memory against frames after the first ${warmup} frames.`,
      '',
      '| process | RSS at start (MiB) | RSS at end (MiB) | growth per 100,000 frames (MiB) |',
      '|---|---|---|---|',
      ...Object.keys(growth).map(
        (k) => `| ${k} | ${samples[0]!.rss_mib[k]} | ${last.rss_mib[k]} | ${growth[k] ?? 'n/a'} |`,
      ),
      '',
    ].join('\n'),
  );
  log(`wrote ${dir}/soak.json and soak.md: growth per 100k frames ${JSON.stringify(growth)}`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`soak: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
