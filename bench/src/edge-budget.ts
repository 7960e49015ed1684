#!/usr/bin/env node
// The split on a constrained camera: the edge agent runs as its own process inside a cgroup that gives it a fixed
// share of one core, frames arrive at camera rate, and all-edge, the cascade and all-cloud are compared by the frames
// per second the camera gets answered, how far the answers fall behind the camera, and accuracy.
// Writes bench/results/edge-budget.json, edge-budget.md and edge-budget.png (with bench/plot.py). Needs root (cgroup).
import { startNatsServer, startWorker, track, type WorkerProcess } from '@cascade/demo';
import type { EdgeResult } from '@cascade/edge';
import { loadModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { lastExitOnly } from './cascade.js';
import { CpuLimit } from './cgroup.js';
import { percentile, processCpuSeconds } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  fps: { type: 'string', help: 'camera frame rate (default 30)' },
  frames: { type: 'string', help: 'frames per run (default 450: 15 s at 30 fps)' },
  budgets: {
    type: 'string',
    help: 'edge CPU budgets in cores, comma-separated; 0 = no limit (default 0,0.5,0.25,0.1)',
  },
  out: { type: 'string', help: 'results folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

interface Config {
  name: string;
  /** Edge flags beyond model, source and pacing. */
  args: (nats: string, exits: number, stages: number) => string[];
  cloud: boolean;
}

const LAST = (exits: number) => lastExitOnly(exits).join(',');

const CONFIGS: Config[] = [
  { name: 'all-edge', args: (_n, exits, stages) => ['--thresholds', LAST(exits), '--split', String(stages)], cloud: false }, // prettier-ignore
  { name: 'cascade (balanced)', args: (nats) => ['--nats', nats, '--operating-point', 'balanced'], cloud: true },
  { name: 'all-cloud (image)', args: (nats, exits) => ['--nats', nats, '--thresholds', LAST(exits), '--mode', 'image'], cloud: true }, // prettier-ignore
];

export interface BudgetRun {
  config: string;
  /** Cores the edge process may use; 0: no limit (the machine's). */
  budget_cores: number;
  frames: number;
  offered_fps: number;
  /** Frames answered per second, first answer to last. */
  answered_fps: number;
  /** How long after the camera took each frame its answer came: latency plus the backlog of a slow edge. */
  behind_ms: { p50: number; p99: number; last: number };
  /** The agent's own latency per frame (from taking it in to its answer). */
  latency_ms: { p50: number; p99: number };
  accuracy: number;
  offload_rate: number;
  fallbacks: number;
  edge_cpu_ms_per_frame: number;
  /** Where the agent chose to run its stages (`--inference-thread auto` times them at start, under the budget). */
  inference_thread: string;
}

async function runOnce(
  c: Config,
  budget: number,
  o: { fps: number; frames: number; nats: string; model: string; exits: number; stages: number },
  limit: CpuLimit | undefined,
): Promise<BudgetRun> {
  const args = [
    `${REPO}packages/edge/dist/cli.js`,
    '--model', o.model,
    '--source', `${REPO}samples/cifar10-test-1000.bin`,
    '--limit', String(o.frames),
    '--max-fps', String(o.fps),
    '--threads', '1',
    '--id', `budget-${budget}`,
    '--metrics-port', '-1',
    '--fleet', 'off',
    '--outbox-dir', 'memory',
    ...c.args(o.nats, o.exits, o.stages),
  ]; // prettier-ignore
  const edge = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  if (limit) {
    limit.set(budget);
    limit.add(edge.pid!);
  }
  let log = '';
  edge.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const arrivals: number[] = [];
  const results: EdgeResult[] = [];
  let cpuAtFirst = 0;
  let cpuAtLast = 0;
  for await (const line of createInterface({ input: edge.stdout! })) {
    if (!line.startsWith('{')) continue;
    arrivals.push(performance.now());
    results.push(JSON.parse(line) as EdgeResult);
    // CPU from the first answer on: model loading at start is not a per-frame cost.
    if (results.length === 1) cpuAtFirst = await processCpuSeconds(edge.pid!);
    if (results.length === o.frames) cpuAtLast = await processCpuSeconds(edge.pid!);
  }
  const code = await new Promise<number | null>((resolve) =>
    edge.exitCode !== null ? resolve(edge.exitCode) : edge.once('exit', resolve),
  );
  if (code !== 0 || results.length !== o.frames)
    throw new Error(`edge (${c.name}, ${budget} cores) exited ${code} after ${results.length} results:\n${log}`);
  const startLine = log.split('\n').find((l) => l.includes('"edge_started"'));
  const started = startLine ? (JSON.parse(startLine) as { inference_thread?: string }) : undefined;
  // The camera's clock: frame i is due i / fps after the first. Frame i was taken in latency_ms before its answer, never
  // before it was due, so the earliest of (taken - i / fps) is when the first was due.
  const t0 = Math.min(...arrivals.map((t, i) => t - results[i]!.latency_ms - (i * 1000) / o.fps));
  const behind = arrivals.map((t, i) => t - (t0 + (i * 1000) / o.fps));
  const lat = results.map((r) => r.latency_ms);
  return {
    config: c.name,
    budget_cores: budget,
    frames: o.frames,
    offered_fps: o.fps,
    answered_fps: ((o.frames - 1) * 1000) / (arrivals.at(-1)! - arrivals[0]!),
    behind_ms: { p50: percentile(behind, 0.5), p99: percentile(behind, 0.99), last: behind.at(-1)! },
    latency_ms: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) },
    accuracy: results.filter((r) => r.class === r.label).length / o.frames,
    offload_rate: results.filter((r) => r.outcome !== 'exited').length / o.frames,
    fallbacks: results.filter((r) => r.outcome === 'fallback').length,
    edge_cpu_ms_per_frame: ((cpuAtLast - cpuAtFirst) * 1000) / (o.frames - 1),
    inference_thread: started?.inference_thread ?? 'unknown',
  };
}

function report(r: { date: string; machine: string; fps: number; frames: number; runs: BudgetRun[] }): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  const rows = r.runs.map(
    (x) =>
      `| ${x.budget_cores ? `${x.budget_cores} core` : 'no limit'} | ${x.config} | ${f(x.answered_fps)} | ${x.answered_fps >= 0.97 * x.offered_fps ? 'yes' : '**no**'} | ${f(x.behind_ms.p50, 0)} / ${f(x.behind_ms.p99, 0)} / ${f(x.behind_ms.last, 0)} | ${f(x.latency_ms.p50)} / ${f(x.latency_ms.p99)} | ${f(x.accuracy * 100)} % | ${f(x.offload_rate * 100)} % | ${x.fallbacks} | ${f(x.edge_cpu_ms_per_frame, 2)} | ${x.inference_thread} |`,
  );
  return [
    '# The split on a constrained camera',
    '',
    `${r.date}, ${r.machine}. The edge agent (\`cascade-edge\`, 1 inference thread) runs as its own process in a CPU cgroup with the budget shown (cpu.max over a 10 ms period), reading ${r.frames} CIFAR-10 sample images paced at ${r.fps} frames/s as a camera would deliver them; one cloud worker and nats-server run unlimited on the same machine. One run each.`,
    '',
    '"Behind" is how long after the camera took a frame its answer came: the latency of an edge that keeps up, growing with the backlog of one that does not (the file source waits for the agent; a camera would drop those frames instead). "Keeps up": at least 97 % of the camera rate answered.',
    '',
    '| edge budget | configuration | answered fps | keeps up | behind p50 / p99 / last ms | agent latency p50 / p99 ms | accuracy | offloaded | fallbacks | edge CPU ms/frame | stages run |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/edge-budget.js [options]', FLAGS));
  const fps = Number(f.fps ?? 30);
  const frames = Number(f.frames ?? 450);
  const budgets = (f.budgets ?? '0,0.5,0.25,0.1').split(',').map(Number);
  const log = (m: string) => process.stderr.write(`[edge-budget] ${m}\n`);
  const modelPath = `${REPO}models/ranet-cifar10`;
  const model = await loadModelDir(modelPath);
  const limit = budgets.some((b) => b > 0) ? CpuLimit.create(`cascade-edge-budget-${process.pid}`) : undefined;
  const nats = await startNatsServer();
  let worker: WorkerProcess | undefined;
  const runs: BudgetRun[] = [];
  try {
    worker = await startWorker({ model: modelPath, nats: nats.url, id: 'budget-worker', extra: ['--threads', '1', '--metrics-port', '-1'] }); // prettier-ignore
    for (const budget of budgets) {
      for (const c of CONFIGS) {
        const run = await runOnce(
          c,
          budget,
          { fps, frames, nats: nats.url, model: modelPath, exits: model.manifest.exits.length, stages: model.manifest.stages.length }, // prettier-ignore
          budget > 0 ? limit : undefined,
        );
        runs.push(run);
        log(
          `${budget || 'no limit'} cores, ${c.name}: ${run.answered_fps.toFixed(1)} fps answered, behind p99 ${run.behind_ms.p99.toFixed(0)} ms, accuracy ${(run.accuracy * 100).toFixed(1)} %`,
        );
      }
    }
  } finally {
    await worker?.stop();
    await nats.stop();
    limit?.remove();
  }
  const out = {
    date: new Date().toISOString(),
    machine: `${cpus()[0]?.model ?? 'unknown'} (${cpus().length} cores), Node ${process.version}, ${model.manifest.name}@${model.manifest.version}`,
    fps,
    frames,
    runs,
  };
  const dir = f.out ?? `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'edge-budget.json'), `${JSON.stringify(out, null, 1)}\n`);
  writeFileSync(join(dir, 'edge-budget.md'), report(out));
  log(`wrote ${dir}/edge-budget.json and edge-budget.md`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`edge-budget: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
