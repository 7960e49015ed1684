#!/usr/bin/env node
// The benchmark suite: writes bench/results/latest.json and latest.md (`--smoke`: a short run that checks the harness).
import { startNatsServer } from '@cascade/demo';
import { loadModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { cascadeConfigs, compression, runCascade, type CascadeRun } from './cascade.js';
import { edgeOverhead, handOff } from './edge.js';
import { report, type BenchResult } from './report.js';
import { rawThroughput } from './raw.js';
import { openLoop, realRequests, transport, workerCapacity } from './worker.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  smoke: { type: 'boolean', help: 'a short run that only checks the harness (results go to smoke.json/.md)' },
  out: { type: 'string', help: 'results folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/run.js [--smoke]', FLAGS));
  const smoke = Boolean(f.smoke);
  const log = (m: string) => process.stderr.write(`[bench] ${m}\n`);
  const samples = `${REPO}samples/cifar10-test-1000.bin`;
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const raw = readFileSync(samples);
  const images = new Uint8Array(1000 * 3072);
  for (let i = 0; i < 1000; i++) images.set(raw.subarray(i * 3073 + 1, (i + 1) * 3073), i * 3072);
  const runs = smoke ? 1 : 5;
  const started = new Date();

  log('1/6 raw onnxruntime per stage');
  const rawResults = await rawThroughput(
    model,
    images,
    { batches: [1, 8, 32], threads: [1, 2], runs, ms: smoke ? 50 : 400 },
    log,
  );
  log('2/6 edge agent against raw onnxruntime');
  const edge = await edgeOverhead(
    model.path,
    samples,
    { threads: [1, 2], frames: smoke ? 50 : 1000, runs: smoke ? 1 : 3, exits: model.manifest.exits.length },
    log,
  );

  const handoff = await handOff(model, images.slice(0, 3072), runs, smoke ? 200 : 2000);
  log(
    `hand-off: stage 0 in-thread ${handoff.in_thread_us.median.toFixed(0)} us, through the worker thread ${handoff.worker_thread_us.median.toFixed(0)} us`,
  );

  const nats = await startNatsServer();
  try {
    const reqs = await realRequests(model, images, smoke ? 64 : 256);
    log('3/6 worker batching');
    const capacity = await workerCapacity(
      model,
      nats.url,
      reqs,
      { threads: 1, runs: smoke ? 1 : 3, ms: smoke ? 300 : 2000, concurrency: 64 },
      log,
    );
    const best = capacity.find((c) => c.max_batch === 32)!.requests_per_second.median;
    const open = await openLoop(
      model,
      nats.url,
      reqs,
      best,
      { threads: 1, loads: [0.5, 0.8, 1.0], ms: smoke ? 300 : 3000 },
      log,
    );
    log('4/6 and 5/6 the cascade against all-cloud and all-edge, and the wire formats');
    const cascade: CascadeRun[] = [];
    const classes = new Map<string, number[]>();
    for (const c of cascadeConfigs(model)) {
      const { run, results } = await runCascade(model, nats.url, samples, c, {
        frames: smoke ? 60 : 1000,
        fps: smoke ? 300 : 200,
        threads: 1,
      });
      const byFrame = results
        .sort((a, b) => Number(a.frame.split('#')[1]) - Number(b.frame.split('#')[1]))
        .map((r) => r.class);
      classes.set(c.name, byFrame);
      const fp32 = classes.get('balanced, state fp32');
      if (c.kind === 'wire format' && fp32) run.changed_vs_fp32 = byFrame.filter((x, i) => x !== fp32[i]).length;
      cascade.push(run);
      log(
        `${c.name}: accuracy ${(run.accuracy * 100).toFixed(2)} %, cloud ${(run.cloud_macs_per_frame / 1e6).toFixed(2)} MMACs/frame, ${run.bytes_per_frame.toFixed(0)} B/frame`,
      );
    }
    const compressed = await compression(model, images, smoke ? 50 : 1000);
    log('6/6 transport');
    const transportResult = await transport(model, nats.url, reqs, { requests: smoke ? 50 : 1000, threads: 1 }, log);

    const result = {
      date: started.toISOString(),
      smoke,
      machine: {
        cpu: cpus()[0]?.model ?? 'unknown',
        cores: cpus().length,
        memory_gib: Math.round(totalmem() / 2 ** 30),
        platform: `${process.platform} ${process.arch}`,
      },
      versions: {
        node: process.version,
        onnxruntime_node: (await import('onnxruntime-node')).env.versions.common,
        model: `${model.manifest.name}@${model.manifest.version}`,
      },
      runs,
      raw: rawResults,
      edge,
      hand_off: handoff,
      worker: { capacity, open_loop: open },
      cascade,
      compression: compressed,
      transport: transportResult,
      manifest: {
        last_exit_test_accuracy: (model.manifest.eval as { test: { accuracy: number[] } }).test.accuracy.at(-1),
      },
    };
    const dir = f.out ?? `${REPO}bench/results`;
    mkdirSync(dir, { recursive: true });
    const name = smoke ? 'smoke' : 'latest';
    writeFileSync(`${dir}/${name}.json`, `${JSON.stringify(result, null, 1)}\n`);
    writeFileSync(`${dir}/${name}.md`, report(result as BenchResult));
    log(`wrote ${dir}/${name}.json and ${name}.md`);
  } finally {
    await nats.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
