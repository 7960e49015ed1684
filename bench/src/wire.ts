#!/usr/bin/env node
// What an offload costs on the wire, over the CIFAR-10 test set: request bytes with and without packing (state mode
// int8, image mode), the edge's time to build a request and the worker's time to validate and unpack it, and whether
// every unpacked tensor is byte-identical to the unpacked-free original (then predictions cannot change).
// Writes bench/results/wire.json and wire.md.
import { buildInferRequest, compileEdgeOptions, requestSettings } from '@cascade/edge';
import { validateRequest } from '@cascade/cloud';
import { decodeTensor, elementCount, encodeTensor, toWireTensor } from '@cascade/proto';
import { compressTensor } from '@cascade/proto/compress';
import {
  carriedOutputs,
  decide,
  exitsHere,
  loadModelDir,
  operatingPoint,
  runCascade,
  StageSessions,
  type Feeds,
  type ModelDir,
} from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { percentile } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  limit: { type: 'string', help: 'images to use (default: all)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

/** The CIFAR-10 test set (CASCADE_DATA or ../shared/data/cifar-10 beside the checkout), else the 1,000 samples. */
function testImages(): { source: string; records: Buffer } {
  const dir = resolve(process.env.CASCADE_DATA ?? `${REPO}../shared/data/cifar-10`);
  for (const f of ['test_batch.bin', 'test_batch.bin.gz']) {
    const path = `${dir}/${f}`;
    if (existsSync(path)) {
      const raw = readFileSync(path);
      return { source: `CIFAR-10 test set (${path})`, records: f.endsWith('.gz') ? gunzipSync(raw) : raw };
    }
  }
  const path = `${REPO}samples/cifar10-test-1000.bin`;
  return {
    source: `the 1,000 bundled samples (${path}; the test set was not found in ${dir})`,
    records: readFileSync(path),
  };
}

interface Variant {
  name: string;
  mode: 'state' | 'image';
  compression: 'none' | 'brotli';
}
const VARIANTS: Variant[] = [
  { name: 'state int8, unpacked', mode: 'state', compression: 'none' },
  { name: 'state int8, packed (default)', mode: 'state', compression: 'brotli' },
  { name: 'image, unpacked', mode: 'image', compression: 'none' },
  { name: 'image, packed', mode: 'image', compression: 'brotli' },
];

/** The variant whose bytes the bit study starts from: the default request (state int8, packed). */
const DEFAULT_VARIANT = 1;
/** State bit widths the study tries. */
const BITS = [8, 6, 5, 4, 3, 2];

interface HardFrame {
  pixels: Uint8Array;
  label: number;
  /** Stage 0's outputs, the carried state among them, float32. */
  state: Feeds;
  /** The default request's bytes for this frame. */
  packedBytes: number;
}

interface BitRow {
  bits: number;
  bytes_mean: number;
  bytes_p99: number;
  /** Frames whose class differs from running the cloud stages on the float32 state. */
  changed_vs_fp32: number;
  /** Frames right minus frames right with the float32 state. */
  accuracy_change: number;
}

/**
 * The hard frames' classes with the state quantised to each bit width, against the float32 state; bytes of each
 * frame's request with its state packed at that width.
 */
async function bitStudy(model: ModelDir, frames: HardFrame[], thresholds: number[]): Promise<BitRow[]> {
  const m = model.manifest;
  const cloud = await StageSessions.create(model, { first: 1, threads: 1 });
  const specs = carriedOutputs(m, 0);
  const classify = async (states: Map<string, Float32Array>[]): Promise<number[]> => {
    const out: number[] = [];
    for (let at = 0; at < frames.length; at += 32) {
      const batch = frames.slice(at, at + 32);
      const pixels = elementCount(m.input.shape);
      const image = new Uint8Array(batch.length * pixels);
      batch.forEach((f, r) => image.set(f.pixels, r * pixels));
      const feeds: Feeds = { image: { data: image, dims: [batch.length, ...m.input.shape] } };
      for (const spec of specs) {
        const per = elementCount(spec.shape.slice(1));
        const data = new Float32Array(batch.length * per);
        batch.forEach((_, r) => data.set(states[at + r]!.get(spec.name)!, r * per));
        feeds[spec.name] = { data, dims: [batch.length, ...spec.shape.slice(1)] };
      }
      const rule = {
        thresholds: new Float64Array(batch.length * m.exits.length),
        allExits: new Uint8Array(batch.length),
      };
      batch.forEach((_, r) => rule.thresholds.set(thresholds, r * m.exits.length));
      const passes = await runCascade(cloud, m, 1, feeds, rule, false);
      const answer = new Array<number>(batch.length).fill(-1);
      for (const p of passes)
        for (const e of m.stages[p.stage]!.exits)
          p.rows.forEach((row, k) => {
            if (answer[row]! >= 0) return;
            const d = decide(p.logits[e]!.subarray(k * m.classes.length, (k + 1) * m.classes.length));
            if (exitsHere(e, d.confidence, thresholds)) answer[row] = d.classIndex;
          });
      out.push(...answer);
    }
    return out;
  };
  const fp32 = await classify(
    frames.map((f) => new Map(specs.map((s) => [s.name, f.state[s.name]!.data as Float32Array] as const))),
  );
  // Each frame's state as the edge encodes and packs it at a width: the packed bytes and what the worker decodes.
  const encoded = (f: HardFrame, bits: number) =>
    specs.map((spec) => {
      const t = encodeTensor(f.state[spec.name]!.data as Float32Array, spec.shape.slice(1), 'int8', bits);
      return { name: spec.name, packed: compressTensor(toWireTensor(spec.name, t)).data!.byteLength, t };
    });
  // The default request's bytes without its (8-bit) state's packed bytes, once per frame.
  const rest = frames.map((f) => f.packedBytes - encoded(f, 8).reduce((a, s) => a + s.packed, 0));
  const rows: BitRow[] = [];
  for (const bits of BITS) {
    const bytes: number[] = [];
    const states = frames.map((f, i) => {
      const tensors = encoded(f, bits);
      bytes.push(rest[i]! + tensors.reduce((a, s) => a + s.packed, 0));
      return new Map(tensors.map((s) => [s.name, decodeTensor(s.t)] as const));
    });
    const classes = await classify(states);
    const sorted = [...bytes].sort((a, b) => a - b);
    rows.push({
      bits,
      bytes_mean: bytes.reduce((a, b) => a + b, 0) / Math.max(1, bytes.length),
      bytes_p99: percentile(sorted, 0.99),
      changed_vs_fp32: classes.filter((c, i) => c !== fp32[i]).length,
      accuracy_change:
        classes.filter((c, i) => c === frames[i]!.label).length - fp32.filter((c, i) => c === frames[i]!.label).length,
    });
  }
  await cloud.release();
  return rows;
}

interface Row {
  variant: string;
  bytes_all: { mean: number; p50: number; p99: number; max: number };
  bytes_hard: { mean: number; p99: number; max: number };
  build_us_mean: number;
  validate_us_mean: number;
  /** Images whose unpacked tensors differ from the unpacked-free request's (must be 0). */
  tensors_changed: number;
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/wire.js [--limit N]', FLAGS));
  const log = (m: string) => process.stderr.write(`[wire] ${m}\n`);
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const m = model.manifest;
  const { source, records } = testImages();
  const n = Math.min(Number(f.limit ?? Infinity), records.length / 3073);
  log(`${n} images from ${source}`);
  const thresholds = operatingPoint(m).thresholds;
  const sessions = await StageSessions.create(model, { last: 0, threads: 1 });
  const settings = VARIANTS.map((v) =>
    requestSettings(compileEdgeOptions({ model: model.path, mode: v.mode, compression: v.compression })),
  );
  const bytes = VARIANTS.map(() => [] as number[]);
  const hardBytes = VARIANTS.map(() => [] as number[]);
  const buildUs = VARIANTS.map(() => 0);
  const validateUs = VARIANTS.map(() => 0);
  const changed = VARIANTS.map(() => 0);
  const hardFrames: HardFrame[] = [];
  for (let i = 0; i < n; i++) {
    const pixels = new Uint8Array(records.subarray(i * 3073 + 1, (i + 1) * 3073));
    const out: Feeds = await sessions.run(0, { image: { data: pixels.slice(), dims: [1, ...m.input.shape] } });
    const hard = !m.stages[0]!.exits.some((e) =>
      exitsHere(e, decide(out[m.exits[e]!.output]!.data as Float32Array).confidence, thresholds),
    );
    if (hard) hardFrames.push({ pixels, label: records[i * 3073]!, state: out, packedBytes: 0 });
    let reference: Record<string, ReturnType<typeof validateRequest>> = {};
    VARIANTS.forEach((v, k) => {
      let t = performance.now();
      const request = buildInferRequest(m, 1, thresholds, settings[k]!, pixels, out);
      buildUs[k]! += (performance.now() - t) * 1000;
      t = performance.now();
      const valid = validateRequest(request, m, 1 << 20);
      validateUs[k]! += (performance.now() - t) * 1000;
      bytes[k]!.push(request.byteLength);
      if (hard) hardBytes[k]!.push(request.byteLength);
      if (hard && k === DEFAULT_VARIANT) hardFrames.at(-1)!.packedBytes = request.byteLength;
      if (v.compression === 'none') reference = { ...reference, [v.mode]: valid };
      else {
        const ref = reference[v.mode]!;
        const same =
          Buffer.compare(Buffer.from(valid.image), Buffer.from(ref.image)) === 0 &&
          [...ref.state].every(([name, t]) => {
            const [got, values] = [decodeTensor(valid.state.get(name)!), decodeTensor(t)];
            return got.length === values.length && got.every((x, j) => x === values[j]);
          });
        if (!same) changed[k]!++;
      }
    });
    if ((i + 1) % 1000 === 0) log(`${i + 1}/${n}`);
  }
  await sessions.release();
  log(`fewer bits: ${hardFrames.length} hard frames through the cloud stages at ${BITS.join(', ')} bits`);
  const bitRows = await bitStudy(model, hardFrames, thresholds);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
  const rows: Row[] = VARIANTS.map((v, k) => {
    const all = sorted(bytes[k]!);
    const hard = sorted(hardBytes[k]!);
    return {
      variant: v.name,
      bytes_all: { mean: mean(all), p50: percentile(all, 0.5), p99: percentile(all, 0.99), max: all.at(-1)! },
      bytes_hard: { mean: mean(hard), p99: percentile(hard, 0.99), max: hard.at(-1) ?? 0 },
      build_us_mean: buildUs[k]! / n,
      validate_us_mean: validateUs[k]! / n,
      tensors_changed: changed[k]!,
    };
  });
  const result = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
    node: process.version,
    model: `${m.name}@${m.version}`,
    source,
    images: n,
    hard_images: hardBytes[0]!.length,
    operating_point: operatingPoint(m).name,
    rows,
    bits: bitRows,
  };
  const dir = `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/wire.json`, `${JSON.stringify(result, null, 2)}\n`);
  const r0 = (x: number) => Math.round(x).toLocaleString('en-US');
  const md = [
    `# Offload bytes on the wire`,
    '',
    `${result.date.slice(0, 10)}, ${result.machine.cpu} (${result.machine.cores} cores), Node ${result.node}, ` +
      `${result.model}; ${n.toLocaleString('en-US')} images from ${source}. Every image is built as an offload; ` +
      `"hard" are the ${result.hard_images.toLocaleString('en-US')} the \`${result.operating_point}\` operating point ` +
      'sends to the cloud. Build: the edge encoding the request; validate: the worker decoding, unpacking and checking it.',
    '',
    '| request | bytes mean / p50 / p99 / max (all) | bytes mean / p99 (hard) | build µs | validate µs | tensors changed by packing |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.variant} | ${r0(r.bytes_all.mean)} / ${r0(r.bytes_all.p50)} / ${r0(r.bytes_all.p99)} / ${r0(r.bytes_all.max)} | ` +
        `${r0(r.bytes_hard.mean)} / ${r0(r.bytes_hard.p99)} | ${r0(r.build_us_mean)} | ${r0(r.validate_us_mean)} | ` +
        `${r.variant.includes('unpacked') ? '—' : `${r.tensors_changed} of ${n.toLocaleString('en-US')}`} |`,
    ),
    '',
    '## Fewer bits in the int8 state (a study: the edge ships 8)',
    '',
    `Each of the ${result.hard_images.toLocaleString('en-US')} hard frames' state quantised per channel to 2^bits levels ` +
      '(`quantizeInt8(x, shape, bits)`: the same int8 tensor on the wire, decoded by the worker as it is), packed as ' +
      'the edge packs it, then run through the cloud stages at the operating point. Request bytes are the default ' +
      "request's with the state's packed bytes swapped in. Only hard frames reach the cloud, so frames that change " +
      `are counted over all ${n.toLocaleString('en-US')}.`,
    '',
    '| state bits | request bytes mean / p99 (hard) | frames whose class differs from the fp32 state | cascade accuracy change, points |',
    '|---|---|---|---|',
    ...bitRows.map(
      (b) =>
        `| ${b.bits} | ${r0(b.bytes_mean)} / ${r0(b.bytes_p99)} | ${b.changed_vs_fp32} | ` +
        `${((100 * b.accuracy_change) / n).toFixed(2)} |`,
    ),
    '',
  ].join('\n');
  writeFileSync(`${dir}/wire.md`, md);
  process.stdout.write(md);
}

await main();
