#!/usr/bin/env node
// Worker throughput by batch size on one execution provider: offloaded frames per second through NATS, decode,
// batching and inference (not the bare graph), then open-loop latency at 50 and 90 % of the best. Built for the GPU
// machine (scripts/gpu-run), runs anywhere. Writes <out>/<label>.json and .md.
import { startNatsServer, startWorker } from '@cascade/demo';
import { subjects } from '@cascade/proto';
import { loadModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { connect } from '@nats-io/transport-node';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { closedLoop, openLoop, realRequests } from './worker.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  model: { type: 'string', help: 'model directory (default models/ranet-cifar10)' },
  samples: { type: 'string', help: 'CIFAR-10 binary file of the images sent (default samples/cifar10-test-1000.bin)' },
  ep: { type: 'string', help: 'execution provider of the worker: cpu, webgpu or cuda (default webgpu)' },
  threads: { type: 'string', help: 'onnxruntime intra-op threads (default 0: onnxruntime decides)' },
  batches: { type: 'string', help: 'max batch sizes to measure (default 1,8,32,128,256,512,1024)' },
  seconds: { type: 'string', help: 'seconds measured per batch size (default 5)' },
  loads: { type: 'string', help: 'open-loop loads as fractions of the best throughput (default 0.5,0.9)' },
  label: { type: 'string', help: 'name of this run in the output files (default <model>-<ep>)' },
  out: { type: 'string', help: 'output folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const log = (m: string) => process.stderr.write(`[gpu-bench] ${m}\n`);

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/gpu.js [--model DIR] [--ep webgpu]', FLAGS));
  const model = await loadModelDir(f.model ?? `${REPO}models/ranet-cifar10`);
  const ep = f.ep ?? 'webgpu';
  const threads = f.threads ?? '0';
  const batches = (f.batches ?? '1,8,32,128,256,512,1024').split(',').map(Number);
  const ms = Number(f.seconds ?? 5) * 1000;
  const label = f.label ?? `${model.manifest.name}-${ep}`;
  const raw = readFileSync(f.samples ?? `${REPO}samples/cifar10-test-1000.bin`);
  const images = new Uint8Array(1000 * 3072);
  for (let i = 0; i < 1000; i++) images.set(raw.subarray(i * 3073 + 1, (i + 1) * 3073), i * 3072);
  // Real images and their real stage-0 state; thresholds send every frame to the last exit (the full cloud path).
  const reqs = await realRequests(model, images, 1000);
  const nats = await startNatsServer({ maxPayload: 8 * 1024 * 1024 });
  const nc = await connect({ servers: nats.url });
  const subject = subjects.infer(model.manifest.name);
  const rows: { max_batch: number; frames_per_second: number; mean_batch: number; in_flight: number }[] = [];
  const workerArgs = (b: number) => ['--ep', ep, '--threads', threads, '--max-batch', String(b), '--max-delay-ms', '5',
    '--queue-limit', String(Math.max(64, 4 * b))]; // prettier-ignore
  try {
    for (const b of batches) {
      const w = await startWorker({
        model: model.path,
        nats: nats.url,
        id: `gpu-${b}`,
        extra: [...workerArgs(b), '--metrics-port', '-1'],
      });
      try {
        const inFlight = Math.max(8, 2 * b);
        await closedLoop(nc, subject, reqs, inFlight, Math.min(ms, 2000)); // warm-up: kernels for this batch shape
        const r = await closedLoop(nc, subject, reqs, inFlight, ms);
        rows.push({
          max_batch: b,
          frames_per_second: Math.round(r.rps),
          mean_batch: Math.round(r.meanBatch * 10) / 10,
          in_flight: inFlight,
        });
        log(`${label} max batch ${b}: ${r.rps.toFixed(0)} frames/s (mean batch ${r.meanBatch.toFixed(1)})`);
      } finally {
        await w.stop();
      }
    }
    const best = rows.reduce((a, r) => (r.frames_per_second > a.frames_per_second ? r : a));
    const loads = (f.loads ?? '0.5,0.9').split(',').map(Number);
    const open = await openLoop(
      model,
      nats.url,
      reqs,
      best.frames_per_second,
      { threads: Number(threads), loads, ms, workerArgs: workerArgs(best.max_batch) },
      log,
    );
    const result = {
      date: new Date().toISOString(),
      label,
      model: `${model.manifest.name}@${model.manifest.version}`,
      weights: (model.manifest as { training?: { weights?: string } }).training?.weights ?? 'trained',
      ep,
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
      versions: { node: process.version, onnxruntime_node: (await import('onnxruntime-node')).env.versions.common },
      request_bytes: reqs[0]!.byteLength,
      throughput: rows,
      best,
      open_loop: open.map((o) => ({ load: o.load, offered_per_second: Math.round(o.offered_per_second), completed: o.completed,
        latency_ms: { p50: Math.round(o.latency_ms.p50 * 100) / 100, p99: Math.round(o.latency_ms.p99 * 100) / 100 } })), // prettier-ignore
    };
    const dir = f.out ?? `${REPO}bench/results`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/${label}.json`, `${JSON.stringify(result, null, 1)}\n`);
    writeFileSync(`${dir}/${label}.md`, [
      `# ${label}: ${result.model} (${result.weights}) on ${ep}, ${result.machine.cpu} (${result.machine.cores} cores)`,
      '',
      '| max batch | offloaded frames/s | mean batch |',
      '|---|---|---|',
      ...rows.map((r) => `| ${r.max_batch} | ${r.frames_per_second} | ${r.mean_batch} |`),
      '',
      '| load | offered/s | completed | p50 (ms) | p99 (ms) |',
      '|---|---|---|---|---|',
      ...result.open_loop.map((o) => `| ${o.load * 100} % | ${o.offered_per_second} | ${o.completed} | ${o.latency_ms.p50} | ${o.latency_ms.p99} |`),
      '',
    ].join('\n')); // prettier-ignore
    log(`wrote ${dir}/${label}.json and .md`);
  } finally {
    await nc.close();
    await nats.stop();
  }
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`gpu-bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
}); // prettier-ignore
