#!/usr/bin/env node
// Worker throughput by batch size on one execution provider: offloaded frames per second through NATS, decode,
// batching and inference (not the bare graph), then open-loop latency at 50 and 90 % of the best. Built for the GPU
// machine (scripts/gpu-run), runs anywhere. Writes <out>/<label>.json and .md.
import { startNatsServer, startWorker } from '@cascade/demo';
import { subjects } from '@cascade/proto';
import { loadModelDir, StageSessions, type ExecutionProvider, type Feeds, type ModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { connect } from '@nats-io/transport-node';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { stageInputs } from './raw.js';
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
  fuse: { type: 'string', help: "the worker's --fuse: auto (on a GPU), on or off (default auto)" },
  label: { type: 'string', help: 'name of this run in the output files (default <model>-<ep>)' },
  out: { type: 'string', help: 'output folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const log = (m: string) => process.stderr.write(`[gpu-bench] ${m}\n`);

/** `n` images: the 1,000 samples repeated. */
function tile(images: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n * 3072);
  for (let i = 0; i < n; i++) out.set(images.subarray((i % 1000) * 3072, ((i % 1000) + 1) * 3072), i * 3072);
  return out;
}

/**
 * The bare graphs: the worker's stages (1 on) through onnxruntime-node on the calling thread, same provider, one
 * batch of `batch` real frames again and again, inputs from the CPU and outputs back to it as in the worker. What
 * the worker adds to this (NATS, decode, batching, the thread hop) is the gap between the two. With `fused`, the
 * stages run as one joined graph, as a worker with --fuse on runs them.
 */
async function graphThroughput(
  model: ModelDir,
  images: Uint8Array,
  o: { ep: string; threads: number; fused: boolean },
  batch: number,
  ms: number,
) {
  const feeds = (await stageInputs(model, tile(images, batch), batch))[1]!;
  const sessions = await StageSessions.create(model, {
    first: 1,
    executionProvider: o.ep as ExecutionProvider,
    threads: o.threads,
    fused: o.fused ? [1] : [],
  });
  try {
    const last = model.manifest.stages.length - 1;
    const pass = async () => {
      if (o.fused) return void (await sessions.runFused(1, feeds));
      let carried: Feeds = feeds;
      for (let s = 1; s <= last; s++) carried = { ...feeds, ...(await sessions.run(s, carried)) };
    };
    for (let i = 0; i < 3; i++) await pass(); // kernels for this shape
    let n = 0;
    const start = performance.now();
    while (performance.now() - start < ms) {
      await pass();
      n++;
    }
    const elapsed = performance.now() - start;
    return {
      frames_per_second: Math.round((n * batch * 1000) / elapsed),
      ms_per_batch: Math.round((elapsed / n) * 100) / 100,
    };
  } finally {
    await sessions.release();
  }
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/gpu.js [--model DIR] [--ep webgpu]', FLAGS));
  const model = await loadModelDir(f.model ?? `${REPO}models/ranet-cifar10`);
  const ep = f.ep ?? 'webgpu';
  const threads = f.threads ?? '0';
  const fuse = f.fuse ?? 'auto';
  const fused = fuse === 'on' || (fuse === 'auto' && ep !== 'cpu'); // as the worker decides
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
  const rows: {
    max_batch: number;
    frames_per_second: number;
    mean_batch: number;
    in_flight: number;
    compute_busy: number;
    graph: { frames_per_second: number; ms_per_batch: number } | { error: string };
  }[] = [];
  const failures: { max_batch: number; error: string }[] = [];
  const workerArgs = (b: number) => ['--ep', ep, '--threads', threads, '--fuse', fuse, '--max-batch', String(b), '--max-delay-ms', '5',
    '--queue-limit', String(Math.max(64, 4 * b))]; // prettier-ignore
  try {
    for (const b of batches) {
      const graph = await graphThroughput(
        model,
        images,
        { ep, threads: Number(threads), fused },
        b,
        Math.min(ms, 1500),
      ).catch((err: Error) => ({ error: err.message.split('\n')[0]! }));
      log(`${label} bare graphs at batch ${b}: ${JSON.stringify(graph)}`);
      let w: Awaited<ReturnType<typeof startWorker>> | undefined;
      try {
        w = await startWorker({
          model: model.path,
          nats: nats.url,
          id: `gpu-${b}`,
          extra: [...workerArgs(b), '--metrics-port', '-1'],
        });
        const inFlight = Math.max(8, 2 * b);
        await closedLoop(nc, subject, reqs, inFlight, Math.min(ms / 2, 1500)); // warm-up: kernels for this batch shape
        const r = await closedLoop(nc, subject, reqs, inFlight, ms);
        rows.push({
          max_batch: b,
          frames_per_second: Math.round(r.rps),
          mean_batch: Math.round(r.meanBatch * 10) / 10,
          in_flight: inFlight,
          compute_busy: Math.round(r.computeBusy * 1000) / 1000,
          graph,
        });
        log(`${label} max batch ${b}: ${r.rps.toFixed(0)} frames/s (mean batch ${r.meanBatch.toFixed(1)}, ` +
          `in onnxruntime ${(r.computeBusy * 100).toFixed(0)} % of the time)`); // prettier-ignore
      } catch (err) {
        // One batch size failing (memory, a timeout) must not lose the others: record it and go on.
        failures.push({ max_batch: b, error: (err as Error).message.split('\n')[0]! });
        log(`${label} max batch ${b} failed: ${(err as Error).message}`);
      } finally {
        await w?.stop();
      }
    }
    if (rows.length === 0) throw new Error(`every batch size failed: ${JSON.stringify(failures)}`);
    const best = rows.reduce((a, r) => (r.frames_per_second > a.frames_per_second ? r : a));
    const loads = (f.loads ?? '0.5,0.9').split(',').map(Number);
    let openError: string | undefined;
    const open = await openLoop(
      model,
      nats.url,
      reqs,
      best.frames_per_second,
      { threads: Number(threads), loads, ms, workerArgs: workerArgs(best.max_batch) },
      log,
    ).catch((err: Error) => {
      openError = err.message.split('\n')[0]!;
      log(`${label} open loop failed: ${err.message}`);
      return [];
    });
    const result = {
      date: new Date().toISOString(),
      label,
      model: `${model.manifest.name}@${model.manifest.version}`,
      weights: (model.manifest as { training?: { weights?: string } }).training?.weights ?? 'trained',
      ep,
      one_graph: fused,
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
      versions: { node: process.version, onnxruntime_node: (await import('onnxruntime-node')).env.versions.common },
      request_bytes: reqs[0]!.byteLength,
      throughput: rows,
      failures,
      best,
      open_loop: open.map((o) => ({ load: o.load, offered_per_second: Math.round(o.offered_per_second), completed: o.completed,
        latency_ms: { p50: Math.round(o.latency_ms.p50 * 100) / 100, p99: Math.round(o.latency_ms.p99 * 100) / 100 } })), // prettier-ignore
      ...(openError ? { open_loop_error: openError } : {}),
    };
    const dir = f.out ?? `${REPO}bench/results`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/${label}.json`, `${JSON.stringify(result, null, 1)}\n`);
    writeFileSync(`${dir}/${label}.md`, [
      `# ${label}: ${result.model} (${result.weights}) on ${ep}${fused ? ', cloud stages as one graph' : ''}, ${result.machine.cpu} (${result.machine.cores} cores)`,
      '',
      '| max batch | offloaded frames/s | mean batch | onnxruntime run time / wall (*) | bare graphs frames/s | ms per batch |',
      '|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.max_batch} | ${r.frames_per_second} | ${r.mean_batch} | ${Math.round(r.compute_busy * 100)} % | ` +
        ('error' in r.graph ? `failed: ${r.graph.error} | |` : `${r.graph.frames_per_second} | ${r.graph.ms_per_batch} |`)),
      '',
      '(*) the worker\'s time inside onnxruntime\'s run() over the wall time: near 100 % inference binds; above it, the',
      'batches in flight overlap (onnxruntime-node runs off the JavaScript thread); well below it, the time goes elsewhere.',
      '',
      '| load | offered/s | completed | p50 (ms) | p99 (ms) |',
      '|---|---|---|---|---|',
      ...result.open_loop.map((o) => `| ${o.load * 100} % | ${o.offered_per_second} | ${o.completed} | ${o.latency_ms.p50} | ${o.latency_ms.p99} |`),
      ...(openError ? [`| open loop failed: ${openError} | | | | |`] : []),
      ...failures.map((x) => `\nmax batch ${x.max_batch} failed: ${x.error}`),
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
