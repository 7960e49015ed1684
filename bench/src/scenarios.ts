#!/usr/bin/env node
// Scenarios of the adaptive cascade: the same frames through an edge with fixed thresholds and with the controller,
// over a local nats-server and two cascade-cloud workers. Writes bench/results/scenarios.json and .md
// (bench/plot.py scenarios.json draws scenario-*.png).
//   drift     the 1,000 samples, then the same images darkened, blurred, noisy and JPEG-compressed (generated here)
//   pressure  the workers' CPU quota halved mid-run (a cgroup CPU limit, as a container's; needs root)
//   link      a bandwidth budget below what the operating point sends
import { seededRandom } from '@cascade/proto';
import { startNatsServer, startWorker, type WorkerProcess } from '@cascade/demo';
import { EdgeAgent, type EdgeOptions, type EdgeResult, type Frame } from '@cascade/edge';
import { loadModelDir, operatingPoint, StageRunner, type Feeds, type ModelDir } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { CpuLimit } from './cgroup.js';
import { percentile, sleep } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  only: { type: 'string', help: 'drift, pressure or link (default: all three)' },
  fps: { type: 'string', help: 'frames per second offered to the edge (default 100)' },
  'shadow-rate': { type: 'string', help: 'share of frames shadow-sampled in every run (default 0.25)' },
  frames: { type: 'string', help: 'sample images per segment (default 1000)' },
  out: { type: 'string', help: 'results folder (default bench/results)' },
  report: { type: 'string', help: 'only write the Markdown tables of an earlier run (its JSON file)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;
const log = (m: string) => process.stderr.write(`[scenarios] ${m}\n`);
const PIXELS = 3 * 32 * 32;

// ---------------------------------------------------------------------------------------------------------------
// Frames and corruptions (deterministic)

const rng = seededRandom;

interface Sample {
  pixels: Uint8Array;
  label: number;
}

function readSamples(n: number): Sample[] {
  const raw = readFileSync(`${REPO}samples/cifar10-test-1000.bin`);
  return Array.from({ length: n }, (_, i) => ({
    label: raw[i * 3073]!,
    pixels: new Uint8Array(raw.subarray(i * 3073 + 1, (i + 1) * 3073)),
  }));
}

const clamp8 = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

/** Under-exposure: 35 % of the light. */
function darken(p: Uint8Array): Uint8Array {
  return p.map((v) => clamp8(v * 0.35));
}

/** Out of focus: a 3x3 box blur, twice, per channel (edges clamped). */
function blur(p: Uint8Array): Uint8Array {
  let cur = Float64Array.from(p);
  for (let pass = 0; pass < 2; pass++) {
    const next = new Float64Array(cur.length);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
          let s = 0;
          for (let dy = -1; dy <= 1; dy++)
            for (let dx = -1; dx <= 1; dx++) {
              const yy = Math.min(31, Math.max(0, y + dy));
              const xx = Math.min(31, Math.max(0, x + dx));
              s += cur[c * 1024 + yy * 32 + xx]!;
            }
          next[c * 1024 + y * 32 + x] = s / 9;
        }
    cur = next;
  }
  return Uint8Array.from(cur, clamp8);
}

/** Sensor noise: Gaussian, sigma 20 levels, seeded per image. */
function noise(p: Uint8Array, seed: number): Uint8Array {
  const r = rng(seed);
  return p.map((v) => {
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    return clamp8(v + 20 * g);
  });
}

/** Compression artefacts: every image through ffmpeg's JPEG encoder at quality scale 20 (low) and back. */
function jpeg(images: Uint8Array[]): Uint8Array[] {
  const hwc = new Uint8Array(images.length * PIXELS);
  images.forEach((p, i) => {
    for (let c = 0; c < 3; c++) for (let k = 0; k < 1024; k++) hwc[i * PIXELS + k * 3 + c] = p[c * 1024 + k]!;
  });
  const q = ['-hide_banner', '-loglevel', 'error'];
  const encoded = execFileSync('ffmpeg', [...q, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', '32x32', '-i', '-', '-c:v', 'mjpeg', '-q:v', '20', '-f', 'mjpeg', '-'], { input: hwc, maxBuffer: 1 << 28 }); // prettier-ignore
  const decoded = execFileSync('ffmpeg', [...q, '-f', 'mjpeg', '-i', '-', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { input: encoded, maxBuffer: 1 << 28 }); // prettier-ignore
  if (decoded.length !== hwc.length) throw new Error(`ffmpeg returned ${decoded.length} bytes, expected ${hwc.length}`);
  return images.map((_, i) => {
    const out = new Uint8Array(PIXELS);
    for (let c = 0; c < 3; c++) for (let k = 0; k < 1024; k++) out[c * 1024 + k] = decoded[i * PIXELS + k * 3 + c]!;
    return out;
  });
}

interface Segment {
  name: string;
  samples: Sample[];
}

function driftSegments(samples: Sample[]): Segment[] {
  const jpegged = jpeg(samples.map((s) => s.pixels));
  return [
    { name: 'clean', samples },
    { name: 'dark', samples: samples.map((s) => ({ ...s, pixels: darken(s.pixels) })) },
    { name: 'blur', samples: samples.map((s) => ({ ...s, pixels: blur(s.pixels) })) },
    { name: 'noise', samples: samples.map((s, i) => ({ ...s, pixels: noise(s.pixels, 1000 + i) })) },
    { name: 'jpeg', samples: samples.map((s, i) => ({ ...s, pixels: jpegged[i]! })) },
  ];
}

/** The last exit's class for every image (the whole model, locally), to measure the loss the cascade really has. */
async function lastExitClasses(model: ModelDir, images: Uint8Array[]): Promise<number[]> {
  const runner = await StageRunner.create(model, { threads: 2 });
  const m = model.manifest;
  const out: number[] = [];
  try {
    for (let at = 0; at < images.length; at += 100) {
      const batch = images.slice(at, at + 100);
      const data = new Uint8Array(batch.length * PIXELS);
      batch.forEach((p, i) => data.set(p, i * PIXELS));
      let carried: Feeds = {};
      let logits: Float32Array | undefined;
      for (let s = 0; s < m.stages.length; s++) {
        // A copy per stage: the runner hands its inputs over to the inference thread.
        const feeds: Feeds = { image: { data: data.slice(), dims: [batch.length, ...m.input.shape] } };
        for (const t of m.stages[s]!.inputs) if (t.name !== 'image') feeds[t.name] = carried[t.name]!;
        const { outputs } = await runner.run(s, feeds);
        carried = outputs;
        logits = outputs[m.exits.at(-1)!.output]?.data as Float32Array | undefined;
      }
      for (let i = 0; i < batch.length; i++) {
        const row = logits!.subarray(i * m.classes.length, (i + 1) * m.classes.length);
        out.push(row.indexOf(Math.max(...row)));
      }
    }
  } finally {
    await runner.close();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// One run: an edge over a list of frames at a fixed rate, sampled as it goes

interface Tick {
  frame: number;
  t_s: number;
  thresholds: number[];
  binding: string;
  estimated_loss: number | null;
  offload_cap: number;
  records: number;
}

interface RunOut {
  results: (Pick<EdgeResult, 'sequence' | 'class' | 'outcome' | 'exit' | 'offload_bytes' | 'latency_ms'> & {
    fallback_reason?: string;
    t_s: number;
  })[];
  ticks: Tick[];
}

async function runEdge(
  natsUrl: string,
  model: ModelDir,
  frames: Sample[],
  fps: number,
  options: Partial<EdgeOptions>,
  events: { at: number; what: () => Promise<void> }[] = [],
): Promise<RunOut> {
  const agent = await EdgeAgent.create(
    {
      model: model.path, nats: natsUrl, id: 'bench-edge', metricsPort: -1, threads: 1, controlIntervalMs: 500,
      fleet: false, ...options,
    }, // prettier-ignore
    () => undefined,
  );
  const results: RunOut['results'] = [];
  const ticks: Tick[] = [];
  const start = performance.now();
  const edgeExits = model.manifest.stages[0]!.exits.length;
  let taken = 0;
  const sampler = setInterval(() => {
    const est = agent.adapt.shadows.size > 0 ? agent.adapt.shadows.estimate(agent.thresholds).loss : null;
    ticks.push({
      frame: taken,
      t_s: (performance.now() - start) / 1000,
      thresholds: agent.thresholds.slice(0, edgeExits),
      binding: agent.adapt.bindingNow,
      estimated_loss: est,
      offload_cap: agent.adapt.last?.offloadCap ?? 1,
      records: agent.adapt.shadows.size,
    });
  }, 250);
  const pending = [...events].sort((a, b) => a.at - b.at);
  async function* paced(): AsyncGenerator<Frame> {
    for (let i = 0; i < frames.length; i++) {
      while (pending.length && pending[0]!.at <= i) await pending.shift()!.what();
      const due = start + (i * 1000) / fps;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      taken = i + 1;
      yield { id: String(i), pixels: frames[i]!.pixels, label: frames[i]!.label, capturedUnixMs: Date.now() };
    }
  }
  try {
    await agent.run(
      paced(),
      (r) =>
      results.push({
        sequence: r.sequence, class: r.class, outcome: r.outcome, exit: r.exit, offload_bytes: r.offload_bytes,
        latency_ms: r.latency_ms, t_s: (performance.now() - start) / 1000,
        ...(r.fallback_reason ? { fallback_reason: r.fallback_reason } : {}),
      }), // prettier-ignore
    );
  } finally {
    clearInterval(sampler);
    await agent.shutdown();
  }
  results.sort((a, b) => a.sequence - b.sequence);
  return { results, ticks };
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios

const pct = (x: number) => Math.round(x * 10000) / 100;

interface SegmentRow {
  segment: string;
  frames: number;
  accuracy: number;
  last_exit_accuracy: number;
  true_loss: number;
  estimated_loss: number | null;
  offload_rate: number;
  fallbacks: Record<string, number>;
  latency_p99_ms: number;
}

function segmentRows(run: RunOut, segments: Segment[], last: number[]): SegmentRow[] {
  const rows: SegmentRow[] = [];
  let at = 0;
  for (const seg of segments) {
    const n = seg.samples.length;
    const rs = run.results.slice(at, at + n);
    const labels = seg.samples.map((s) => s.label);
    const right = rs.filter((r, i) => r.class === labels[i]).length;
    const lastRight = last.slice(at, at + n).filter((c, i) => c === labels[i]).length;
    // The estimate over the second half of the segment: the window has turned over to the segment's frames by then.
    const ests = run.ticks
      .filter((t) => t.frame > at + n / 2 && t.frame <= at + n && t.estimated_loss !== null)
      .map((t) => t.estimated_loss!);
    const fallbacks: Record<string, number> = {};
    for (const r of rs) if (r.fallback_reason) fallbacks[r.fallback_reason] = (fallbacks[r.fallback_reason] ?? 0) + 1;
    rows.push({
      segment: seg.name,
      frames: n,
      accuracy: pct(right / n),
      last_exit_accuracy: pct(lastRight / n),
      true_loss: pct((lastRight - right) / n),
      estimated_loss: ests.length ? pct(ests.reduce((a, b) => a + b, 0) / ests.length) : null,
      offload_rate: pct(rs.filter((r) => r.offload_bytes > 0).length / n),
      fallbacks,
      latency_p99_ms:
        Math.round(
          percentile(
            rs.map((r) => r.latency_ms),
            0.99,
          ) * 10,
        ) / 10,
    });
    at += n;
  }
  return rows;
}

/** A compact series for the plots: one point per tick, and per-frame outcomes folded into 100-frame bins. */
function series(run: RunOut) {
  const bins: { frame: number; offload_rate: number; fallbacks: number; bytes_per_s: number; p99_ms: number }[] = [];
  for (let at = 0; at < run.results.length; at += 100) {
    const rs = run.results.slice(at, at + 100);
    const seconds = Math.max(1e-3, rs.at(-1)!.t_s - rs[0]!.t_s);
    bins.push({
      frame: at + rs.length,
      offload_rate: rs.filter((r) => r.offload_bytes > 0).length / rs.length,
      fallbacks: rs.filter((r) => r.outcome === 'fallback').length,
      bytes_per_s: rs.reduce((a, r) => a + r.offload_bytes, 0) / seconds,
      p99_ms: percentile(
        rs.map((r) => r.latency_ms),
        0.99,
      ),
    });
  }
  return { bins, ticks: run.ticks };
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/scenarios.js [--only drift]', FLAGS));
  if (f.report) {
    const md = f.report.replace(/\.json$/, '.md');
    writeFileSync(md, report(JSON.parse(readFileSync(f.report, 'utf8')) as Record<string, unknown>));
    log(`wrote ${md}`);
    return;
  }
  const fps = Number(f.fps ?? 100);
  const shadowRate = Number(f['shadow-rate'] ?? 0.25);
  const n = Number(f.frames ?? 1000);
  const only = f.only;
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const op = operatingPoint(model.manifest, 'balanced');
  const samples = readSamples(n);
  const nats = await startNatsServer();
  const limit = only === undefined || only === 'pressure' ? CpuLimit.create(`cascade-bench-${process.pid}`) : undefined;
  const workers: WorkerProcess[] = [];
  for (const id of ['w1', 'w2'])
    workers.push(await startWorker({ model: model.path, nats: nats.url, id, extra: ['--threads', '1'] }));
  const out: Record<string, unknown> = {
    date: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
    model: { name: model.manifest.name, version: model.manifest.version },
    operating_point: { name: op.name, max_drop: op.max_drop },
    fps,
    shadow_rate: shadowRate,
  };
  const common = { operatingPoint: op.name, shadowRate, shadowWindow: 200, minShadowRecords: 100 };
  try {
    if (!only || only === 'drift') {
      log(`drift: ${n} samples, then darkened, blurred, noisy, JPEG; ${fps} frames/s`);
      const segments = driftSegments(samples);
      const frames = segments.flatMap((s) => s.samples);
      const last = await lastExitClasses(
        model,
        frames.map((s) => s.pixels),
      );
      const runs: Record<string, unknown> = {};
      for (const [name, controller] of [
        ['fixed', false],
        ['controller', true],
      ] as const) {
        log(`drift: ${name} thresholds`);
        const run = await runEdge(nats.url, model, frames, fps, { ...common, controller });
        const rows = segmentRows(run, segments, last);
        for (const r of rows)
          log(`  ${name} ${r.segment}: accuracy ${r.accuracy} % (last exit ${r.last_exit_accuracy} %), true loss ${r.true_loss}, estimated ${r.estimated_loss}, offload ${r.offload_rate} %`); // prettier-ignore
        runs[name] = { segments: rows, ...series(run) };
      }
      out.drift = { segments: segments.map((s) => s.name), frames_per_segment: n, runs };
    }
    if (!only || only === 'link') {
      // What the operating point sends on clean frames, then a budget of a quarter of it.
      const frames = [...samples, ...samples];
      log('link: measuring what balanced sends');
      const free = await runEdge(nats.url, model, frames, fps, { ...common, controller: false });
      const seconds = free.results.at(-1)!.t_s - free.results[0]!.t_s;
      const needed = free.results.reduce((a, r) => a + r.offload_bytes, 0) / seconds;
      const budget = Math.round(needed / 4);
      log(`link: balanced sends ${Math.round(needed)} B/s; budget ${budget} B/s`);
      const runs: Record<string, unknown> = {};
      for (const [name, mode] of [
        ['fixed', 'state'],
        ['controller', 'state'],
        ['controller, auto mode', 'auto'],
      ] as const) {
        const run =
          name === 'fixed' ? free : await runEdge(nats.url, model, frames, fps, { ...common, controller: true, mode, bandwidthBytesPerS: budget }); // prettier-ignore
        const secondHalf = run.results.slice(frames.length / 2);
        const s = secondHalf.at(-1)!.t_s - secondHalf[0]!.t_s;
        const bytesPerS = secondHalf.reduce((a, r) => a + r.offload_bytes, 0) / s;
        const right = secondHalf.filter((r, i) => r.class === samples[i]!.label).length;
        runs[name] = {
          bytes_per_s_second_half: Math.round(bytesPerS),
          over_budget: pct(bytesPerS / budget - 1),
          accuracy_second_half: pct(right / secondHalf.length),
          offload_rate_second_half: pct(secondHalf.filter((r) => r.offload_bytes > 0).length / secondHalf.length),
          ...series(run),
        };
        log(
          `link ${name}: ${Math.round(bytesPerS)} B/s (budget ${budget}), accuracy ${pct(right / secondHalf.length)} %`,
        );
      }
      out.link = { needed_bytes_per_s: Math.round(needed), budget_bytes_per_s: budget, runs };
    }
    if (limit) {
      // Workers limited to a CPU quota that serves the offered offloads comfortably, then half of it.
      const quota = 0.5;
      limit.set(quota);
      for (const w of workers) limit.add(w.process.pid!);
      const frames = driftSegments(samples)
        .slice(1)
        .flatMap((s) => s.samples); // drifted frames: the offload rate is high
      const halfAt = Math.round(frames.length * 0.4);
      log(`pressure: ${frames.length} drifted frames, workers at ${quota} cores each, halved at frame ${halfAt}`);
      const runs: Record<string, unknown> = {};
      for (const [name, controller] of [
        ['fixed', false],
        ['controller', true],
      ] as const) {
        limit.set(quota);
        await sleep(500);
        const run = await runEdge(
          nats.url,
          model,
          frames,
          fps,
          { ...common, controller, timeoutMs: 300, latencyTargetMs: 150 },
          [{ at: halfAt, what: async () => limit.set(quota / 2) }],
        );
        const after = run.results.slice(halfAt);
        const fallbacks: Record<string, number> = {};
        for (const r of after)
          if (r.fallback_reason) fallbacks[r.fallback_reason] = (fallbacks[r.fallback_reason] ?? 0) + 1;
        // Reaction: from the halving to the last timeout fallback.
        const lastTimeout = after.filter((r) => r.fallback_reason === 'timeout').at(-1);
        const halvedAt = run.results[halfAt]!.t_s;
        const windows = new Array<number>(Math.ceil((after.at(-1)!.t_s - halvedAt) / 5)).fill(0);
        for (const r of after) if (r.fallback_reason === 'timeout') windows[Math.floor((r.t_s - halvedAt) / 5)]!++;
        runs[name] = {
          timeouts_per_5s_after_halving: windows,
          fallbacks_after_halving: fallbacks,
          last_timeout_after_s: lastTimeout ? Math.round((lastTimeout.t_s - halvedAt) * 10) / 10 : null,
          p99_ms_before: Math.round(
            percentile(
              run.results.slice(0, halfAt).map((r) => r.latency_ms),
              0.99,
            ),
          ),
          p99_ms_after: Math.round(
            percentile(
              after.map((r) => r.latency_ms),
              0.99,
            ),
          ),
          offload_rate_before: pct(run.results.slice(0, halfAt).filter((r) => r.offload_bytes > 0).length / halfAt),
          offload_rate_after: pct(after.filter((r) => r.offload_bytes > 0).length / after.length),
          accuracy_after: pct(after.filter((r, i) => r.class === frames[halfAt + i]!.label).length / after.length),
          ...series(run),
        };
        log(`pressure ${name}: ${JSON.stringify({ ...(runs[name] as object), bins: undefined, ticks: undefined })}`);
      }
      out.pressure = { worker_cores_before: quota, worker_cores_after: quota / 2, halved_at_frame: halfAt, timeout_ms: 300, latency_target_ms: 150, runs }; // prettier-ignore
    }
  } finally {
    for (const w of workers) await w.stop();
    await nats.stop();
    limit?.remove();
  }
  const dir = f.out ?? `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  const name = only ? `scenarios-${only}` : 'scenarios';
  writeFileSync(`${dir}/${name}.json`, `${JSON.stringify(out, null, 1)}\n`);
  writeFileSync(`${dir}/${name}.md`, report(out));
  log(`wrote ${dir}/${name}.json and .md`);
}

/** The tables of a run, as Markdown. */
function report(r: Record<string, unknown>): string {
  const m = r.machine as { cpu: string; cores: number };
  const op = r.operating_point as { name: string; max_drop?: number };
  const lines = [
    `# Adaptive cascade scenarios (${String(r.date).slice(0, 10)}, ${m.cpu}, ${m.cores} cores)`,
    '',
    `Model ${(r.model as { name: string }).name}@${(r.model as { version: string }).version}, operating point ${op.name} ` +
      `(budget ${((op.max_drop ?? 0) * 100).toFixed(1)} points), ${r.fps} frames/s, shadow rate ${r.shadow_rate} in ` +
      'every run; a local nats-server and two workers (1 thread each) share the machine with the edge.',
    '',
  ];
  const fmt = (v: number | null) => (v === null ? '-' : v.toFixed(2));
  const drift = r.drift as { runs: Record<string, { segments: SegmentRow[] }> } | undefined;
  if (drift) {
    lines.push(
      '## Drift',
      '',
      '| frames | run | accuracy % | last exit % | true loss (points) | estimated loss | offloaded % |',
    );
    lines.push('|---|---|---|---|---|---|---|');
    const names = Object.keys(drift.runs);
    drift.runs[names[0]!]!.segments.forEach((_, i) => {
      for (const name of names) {
        const s = drift.runs[name]!.segments[i]!;
        lines.push(`| ${s.segment} | ${name} | ${s.accuracy} | ${s.last_exit_accuracy} | ${fmt(s.true_loss)} | ${fmt(s.estimated_loss)} | ${s.offload_rate} |`); // prettier-ignore
      }
    });
    lines.push('');
  }
  const pressure = r.pressure as { worker_cores_before: number; runs: Record<string, Record<string, unknown>> } | undefined; // prettier-ignore
  if (pressure) {
    lines.push('## Pressure', '', `Workers at ${pressure.worker_cores_before} cores each, halved mid-run; 300 ms offload deadline, 150 ms latency target.`, ''); // prettier-ignore
    lines.push('| run | timeouts per 5 s after halving | last timeout after | offloaded before / after % | p99 before / after (ms) | accuracy after % |'); // prettier-ignore
    lines.push('|---|---|---|---|---|---|');
    for (const [name, x] of Object.entries(pressure.runs))
      lines.push(`| ${name} | ${(x.timeouts_per_5s_after_halving as number[]).join(', ')} | ${x.last_timeout_after_s ?? '-'} s | ${x.offload_rate_before} / ${x.offload_rate_after} | ${x.p99_ms_before} / ${x.p99_ms_after} | ${x.accuracy_after} |`); // prettier-ignore
    lines.push('');
  }
  const link = r.link as { needed_bytes_per_s: number; budget_bytes_per_s: number; runs: Record<string, Record<string, unknown>> } | undefined; // prettier-ignore
  if (link) {
    lines.push('## Narrow link', '', `The operating point sends ${link.needed_bytes_per_s} B/s; budget ${link.budget_bytes_per_s} B/s. Second half of the run:`, ''); // prettier-ignore
    lines.push('| run | bytes/s | against the budget | offloaded % | accuracy % |', '|---|---|---|---|---|');
    for (const [name, x] of Object.entries(link.runs))
      lines.push(`| ${name} | ${x.bytes_per_s_second_half} | ${Number(x.over_budget) > 0 ? '+' : ''}${x.over_budget} % | ${x.offload_rate_second_half} | ${x.accuracy_second_half} |`); // prettier-ignore
    lines.push('');
  }
  return `${lines.join('\n')}`;
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`scenarios: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
