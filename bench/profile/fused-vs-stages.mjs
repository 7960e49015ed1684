#!/usr/bin/env node
// The cloud stages as the worker runs them (one graph per stage, every carried state back to the host between
// them) against the same stages fused into one graph (training: ranet.export.export_fused), bare onnxruntime-node
// on one provider, by batch size. Frames per second and milliseconds per batch; inputs random (throughput only).
//   node bench/profile/fused-vs-stages.mjs MODEL_DIR FUSED_ONNX OUT_JSON [EP] [BATCHES] [ORT_PACKAGE_DIR]
import { ortFrom, randomTensor } from './common.mjs';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const [modelDir, fusedFile, outFile, ep = 'webgpu', batchList = '1,128,512,1024', from = process.cwd()] =
  process.argv.slice(2);
if (!modelDir || !fusedFile || !outFile) {
  console.error('usage: fused-vs-stages.mjs MODEL_DIR FUSED_ONNX OUT_JSON [EP] [BATCHES] [ORT_PACKAGE_DIR]');
  process.exit(2);
}
const ort = ortFrom(from);
const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8'));
const options = { executionProviders: [ep], graphOptimizationLevel: 'all', logSeverityLevel: 3 };
const stages = [];
for (const spec of manifest.stages.slice(1)) {
  stages.push({ spec, session: await ort.InferenceSession.create(readFileSync(join(modelDir, spec.file)), options) });
}
const fused = await ort.InferenceSession.create(readFileSync(fusedFile), options);

async function timed(pass, batch) {
  for (let i = 0; i < 3; i++) await pass();
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 1500 || n < 3) {
    await pass();
    n++;
  }
  const ms = (performance.now() - t0) / n;
  return { frames_per_second: Math.round((batch * 1000) / ms), ms_per_batch: Math.round(ms * 100) / 100 };
}
const rows = [];
for (const batch of batchList.split(',').map(Number)) {
  const first = Object.fromEntries(stages[0].spec.inputs.map((t) => [t.name, randomTensor(ort, t, batch)]));
  const chained = await timed(async () => {
    let carried = first;
    for (const { spec, session } of stages) {
      const out = await session.run(Object.fromEntries(spec.inputs.map((t) => [t.name, carried[t.name]])));
      carried = { ...first, ...out };
    }
  }, batch);
  const one = await timed(() => fused.run(first), batch);
  rows.push({
    batch,
    stages: chained,
    fused: one,
    speedup: Math.round((one.frames_per_second / chained.frames_per_second) * 100) / 100,
  });
  console.error(
    `[fused] ${ep} batch ${batch}: stages ${chained.frames_per_second}/s, fused ${one.frames_per_second}/s`,
  );
}
const result = { ep, model: `${manifest.name}@${manifest.version}`, fused: fusedFile, rows };
writeFileSync(outFile, `${JSON.stringify(result, null, 1)}\n`);
console.log(JSON.stringify(result));
