#!/usr/bin/env node
// Where the cloud stages spend their time on a provider: onnxruntime's profiler over stages 1.. of a model at one
// batch size, summed by operator type. Run with the benchmark's node_modules on the resolution path:
//   node bench/profile/webgpu-profile.mjs MODEL_DIR BATCH OUT_DIR [EP] [ORT_PACKAGE_DIR]
import { ortFrom, randomTensor } from './common.mjs';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const [modelDir, batchArg, outDir, ep = 'webgpu', from = process.cwd()] = process.argv.slice(2);
if (!modelDir || !batchArg || !outDir) {
  console.error('usage: webgpu-profile.mjs MODEL_DIR BATCH OUT_DIR [EP] [ORT_PACKAGE_DIR]');
  process.exit(2);
}
const ort = ortFrom(from);
const batch = Number(batchArg);
const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
mkdirSync(outDir, { recursive: true });
const summary = { ep, batch, model: `${manifest.name}@${manifest.version}`, stages: [] };
for (const stage of manifest.stages.slice(1)) {
  const session = await ort.InferenceSession.create(readFileSync(join(modelDir, stage.file)), {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
    enableProfiling: true,
    profileFilePrefix: join(outDir, `profile-${ep}-stage${stage.index}`),
    logSeverityLevel: 3,
  });
  const feeds = Object.fromEntries(stage.inputs.map((t) => [t.name, randomTensor(ort, t, batch)]));
  for (let i = 0; i < 3; i++) await session.run(feeds);
  const runs = 5;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await session.run(feeds);
  const ms = (performance.now() - t0) / runs;
  session.endProfiling(); // writes <prefix>_<timestamp>.json
  await session.release();
  const prefix = `profile-${ep}-stage${stage.index}_`;
  const file = join(
    outDir,
    readdirSync(outDir)
      .filter((f) => f.startsWith(prefix))
      .sort()
      .at(-1),
  );
  // Chrome trace events: "Node" events (kernel calls as onnxruntime times them) and, where the provider records
  // them, "Api"/GPU events. Sum durations by category and operator over the timed runs' share of the trace.
  const events = JSON.parse(readFileSync(file, 'utf8'));
  const byOp = {};
  for (const e of events) {
    if (e.ph !== 'X' || !e.args?.op_name) continue;
    const key = `${e.cat}:${e.args.op_name}${e.args.provider ? `@${e.args.provider}` : ''}`;
    const slot = (byOp[key] ??= { us: 0, calls: 0 });
    slot.us += e.dur;
    slot.calls++;
  }
  // "Api" events: the provider's own GPU timings (WebGPU timestamp queries), named node&op&program.
  const gpu = {};
  let gpuUs = 0;
  for (const e of events) {
    if (e.cat !== 'Api' || e.ph !== 'X') continue;
    const program = e.name.split('&').at(-1);
    const slot = (gpu[program] ??= { us: 0, calls: 0 });
    slot.us += e.dur;
    slot.calls++;
    gpuUs += e.dur;
  }
  const top = Object.entries(byOp)
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, 15);
  summary.stages.push({
    stage: stage.index,
    ms_per_run: Math.round(ms * 100) / 100,
    trace: file,
    events: events.length,
    top: Object.fromEntries(
      top.map(([k, v]) => [k, { ms_per_run: Math.round(v.us / 8 / 10) / 100, calls_per_run: v.calls / 8 }]),
    ),
    gpu_ms_per_run: Math.round(gpuUs / 8 / 10) / 100,
    gpu_by_program: Object.fromEntries(
      Object.entries(gpu)
        .sort((a, b) => b[1].us - a[1].us)
        .slice(0, 12)
        .map(([k, v]) => [k, { ms_per_run: Math.round(v.us / 8 / 10) / 100, calls_per_run: v.calls / 8 }]),
    ),
  });
  console.error(`[profile] ${ep} stage ${stage.index} batch ${batch}: ${ms.toFixed(1)} ms per run`);
}
writeFileSync(join(outDir, `profile-${ep}-b${batch}.json`), `${JSON.stringify(summary, null, 1)}\n`);
console.log(JSON.stringify(summary, null, 1));
