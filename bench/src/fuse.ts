#!/usr/bin/env node
// A CPU worker with the cloud stages as one joined graph (--fuse on) against a graph per stage (--fuse off), on the
// cascade as it runs: each operating point and all-cloud, the same 1,000 sample frames paced like a camera, the
// worker's own CPU per frame. With one graph every frame of a batch is computed to the last exit; with a graph per
// stage a frame that leaves at a cloud stage's exit skips the later stages. Which costs less depends on where the
// offloaded frames exit: measured here, not assumed. Writes <out>/fuse-cpu.json and .md.
import { startNatsServer } from '@cascade/demo';
import { loadModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { cascadeConfigs, runCascade, type CascadeRun } from './cascade.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  frames: { type: 'string', help: 'frames per run (default 1000)' },
  fps: { type: 'string', help: 'camera rate (default 200)' },
  repeats: {
    type: 'string',
    help: 'runs of each configuration and setting, alternating; the median is kept (default 3)',
  },
  out: { type: 'string', help: 'output folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const log = (m: string) => process.stderr.write(`[fuse] ${m}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/fuse.js', FLAGS));
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const samples = `${REPO}samples/cifar10-test-1000.bin`;
  const frames = Number(f.frames ?? 1000);
  const fps = Number(f.fps ?? 200);
  const repeats = Number(f.repeats ?? 3);
  const configs = cascadeConfigs(model).filter((c) => c.kind === 'operating point' || c.kind === 'all-cloud');
  const nats = await startNatsServer();
  const rows = [];
  try {
    for (const c of configs) {
      const runs: Record<'off' | 'on', CascadeRun[]> = { off: [], on: [] };
      const classes: Record<'off' | 'on', string> = { off: '', on: '' };
      for (let r = 0; r < repeats; r++) {
        for (const fuse of ['off', 'on'] as const) {
          const { run, results } = await runCascade(model, nats.url, samples, c, {
            frames,
            fps,
            threads: 1,
            workerArgs: ['--fuse', fuse],
          });
          runs[fuse].push(run);
          classes[fuse] = results
            .sort((a, b) => Number(a.frame.split('#')[1]) - Number(b.frame.split('#')[1]))
            .map((x) => `${x.tier}:${x.exit}:${x.class}`)
            .join(',');
        }
      }
      const cpu = (fuse: 'off' | 'on') => median(runs[fuse].map((x) => x.cloud_cpu_seconds_per_frame)) * 1000;
      const row = {
        name: c.name,
        offload_rate: runs.on[0]!.offload_rate,
        accuracy: { off: runs.off[0]!.accuracy, on: runs.on[0]!.accuracy },
        same_answers: classes.off === classes.on,
        worker_cpu_ms_per_frame: { off: cpu('off'), on: cpu('on') },
        ratio: cpu('on') / cpu('off'),
        fallbacks: runs.on.reduce((a, x) => a + x.fallbacks, 0) + runs.off.reduce((a, x) => a + x.fallbacks, 0),
      };
      rows.push(row);
      log(
        `${c.name}: worker CPU ${row.worker_cpu_ms_per_frame.off.toFixed(3)} -> ${row.worker_cpu_ms_per_frame.on.toFixed(3)} ms/frame (${row.ratio.toFixed(2)}), same answers ${row.same_answers}`,
      );
    }
  } finally {
    await nats.stop();
  }
  const result = {
    date: new Date().toISOString(),
    model: `${model.manifest.name}@${model.manifest.version}`,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
    frames,
    fps,
    repeats,
    rows,
  };
  const dir = f.out ?? `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/fuse-cpu.json`, `${JSON.stringify(result, null, 1)}\n`);
  writeFileSync(`${dir}/fuse-cpu.md`, [
    `# CPU worker: one joined graph against a graph per stage (${result.model}; ${result.machine.cpu}, ${result.machine.cores} cores)`,
    '',
    `${frames} sample frames at ${fps} frames/s per run, 1 onnxruntime thread; worker CPU per frame (all frames, offloaded or not), median of ${repeats} runs.`,
    '',
    '| configuration | offloaded | worker CPU ms/frame, a graph per stage | one graph | ratio | same answers | accuracy |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${(r.offload_rate * 100).toFixed(1)} % | ${r.worker_cpu_ms_per_frame.off.toFixed(3)} | ${r.worker_cpu_ms_per_frame.on.toFixed(3)} | ${r.ratio.toFixed(2)} | ${r.same_answers ? 'yes' : 'no'} | ${(r.accuracy.on * 100).toFixed(1)} % |`),
    '',
  ].join('\n')); // prettier-ignore
  log(`wrote ${dir}/fuse-cpu.json and .md`);
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`fuse: ${err.stack ?? err.message}\n`);
  process.exit(1);
}); // prettier-ignore
