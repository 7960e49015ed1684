import type { CascadeRun, Compression } from './cascade.js';
import type { EdgeOverhead, HandOff } from './edge.js';
import type { RawResult } from './raw.js';
import type { Spread } from './stats.js';
import type { Capacity, OpenLoop, Transport } from './worker.js';

export interface BenchResult {
  date: string;
  smoke: boolean;
  machine: { cpu: string; cores: number; memory_gib: number; platform: string };
  versions: Record<string, string>;
  runs: number;
  raw: RawResult[];
  edge: EdgeOverhead[];
  hand_off: HandOff;
  worker: { capacity: Capacity[]; open_loop: OpenLoop[] };
  cascade: CascadeRun[];
  compression: Compression[];
  transport: Transport;
}

const f0 = (x: number) => x.toFixed(0);
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const sp = (s: Spread, f = f0) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
const ok = (pass: boolean) => (pass ? 'met' : '**not met**');

function rawEntry(r: BenchResult, stage: number, batch: number, threads: number) {
  return r.raw.find((x) => x.stage === stage && x.batch === batch && x.threads === threads);
}

function rawAt(r: BenchResult, stage: number, batch: number, threads: number): number {
  return rawEntry(r, stage, batch, threads)?.samples_per_second.median ?? NaN;
}

/** The stages a worker runs for a state-mode request: 1 to the last. */
function cloudStages(r: BenchResult): number[] {
  return [...new Set(r.raw.map((x) => x.stage))].filter((s) => s > 0);
}

/** CPU seconds per sample of stages 1.. chained at a batch size, from the raw figures (NaN for results without them). */
export function rawCloudCpu(r: BenchResult, batch: number, threads: number): number {
  return cloudStages(r).reduce((a, s) => a + (rawEntry(r, s, batch, threads)?.cpu_seconds_per_sample ?? NaN), 0);
}

/** Samples per second of stages 1.. chained (what a worker runs for a state-mode request), from the raw figures. */
export function rawCloud(r: BenchResult, batch: number, threads: number): number {
  return 1 / cloudStages(r).reduce((a, s) => a + 1 / rawAt(r, s, batch, threads), 0);
}

export function report(r: BenchResult): string {
  const L: string[] = [];
  L.push(`# Cascade benchmarks${r.smoke ? ' (smoke run: harness check, not results)' : ''}`, '');
  L.push(
    `${r.date}, ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memory_gib} GiB, ${r.machine.platform}; ` +
      `Node ${r.versions.node}, onnxruntime-node ${r.versions.onnxruntime_node}, model ${r.versions.model}. ` +
      `Medians of ${r.runs} runs with (min–max) unless noted. Everything (clients, workers, nats-server) shares this machine.`,
    '',
  );

  L.push(
    '## 1. The limit: raw onnxruntime-node per stage (samples/s)',
    '',
    '| stage | batch | 1 thread | 2 threads |',
    '|---|---|---|---|',
  );
  for (const s of [...new Set(r.raw.map((x) => x.stage))]) {
    for (const b of [...new Set(r.raw.map((x) => x.batch))]) {
      const cell = (t: number) => {
        const x = r.raw.find((y) => y.stage === s && y.batch === b && y.threads === t);
        return x ? sp(x.samples_per_second) : '–';
      };
      L.push(`| ${s} | ${b} | ${cell(1)} | ${cell(2)} |`);
    }
  }

  L.push(
    '',
    '## 2. Edge agent against raw onnxruntime (stage 0, batch 1, every frame ends at exit 1)',
    '',
    '| threads | frames in the edge stages | edge frames/s | raw samples/s | ratio | per-frame p50 ms | target ≥ 0.90 |',
    '|---|---|---|---|---|---|---|',
  );
  for (const e of r.edge) {
    const raw = rawAt(r, 0, 1, e.threads);
    const ratio = e.frames_per_second.median / raw;
    L.push(
      `| ${e.threads} | ${e.pipeline} | ${sp(e.frames_per_second)} | ${f0(raw)} | ${f2(ratio)} | ${sp(e.latency_ms_p50, f2)} | ${ok(ratio >= 0.9)} |`,
    );
  }

  const h = r.hand_off;
  L.push(
    '',
    `Where the time goes, per frame (1 thread): stage 0 on the calling thread ${sp(h.in_thread_us)} µs; through the ` +
      `worker thread (StageRunner) ${sp(h.worker_thread_us)} µs; a bare postMessage round trip between two threads ${sp(h.bare_postmessage_round_trip_us)} µs.`,
  );
  const last = Math.max(...cloudStages(r));
  const cloudLabel = last === 1 ? 'stage 1' : `stages 1-${last}`;
  L.push(
    '',
    `## 3. Worker batching (state-mode requests through ${cloudLabel}, 1 inference thread, 64 requests in flight)`,
    '',
    `| max batch | requests/s | mean batch | raw ${cloudLabel} at that batch | ratio | target | worker CPU ms/request | raw CPU ms/sample | CPU ratio (raw ÷ worker) | worker run() ms/request | raw run() ms/sample |`,
    '|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const c of r.worker.capacity) {
    const batch = c.max_batch === 1 ? 1 : 32;
    const raw = rawCloud(r, batch, c.threads);
    const ratio = c.requests_per_second.median / raw;
    const target = c.max_batch === 1 ? 0.7 : 0.9; // batching: 90 % of raw; one request at a time: 70 %
    const rawCpu = rawCloudCpu(r, batch, c.threads);
    const cpu = c.cpu_seconds_per_request;
    L.push(
      `| ${c.max_batch} | ${sp(c.requests_per_second)} | ${f1(c.mean_batch)} | ${f0(raw)} | ${f2(ratio)} | ≥ ${f2(target)}: ${ok(ratio >= target)} | ` +
        `${cpu === undefined ? '-' : f2(cpu * 1000)} | ${Number.isNaN(rawCpu) ? '-' : f2(rawCpu * 1000)} | ` +
        `${cpu === undefined || Number.isNaN(rawCpu) ? '-' : f2(rawCpu / cpu)} | ` +
        `${c.compute_ms_per_request === undefined ? '-' : f2(c.compute_ms_per_request)} | ${f2(1000 / raw)} |`,
    );
  }
  L.push(
    '',
    "Worker CPU is the worker process's user + system time over the measured runs per answered request; raw CPU is the " +
      "benchmark process's time per sample running the same stages at the same batch on its own, so the CPU ratio " +
      'leaves out what the client and nats-server take from the worker on this machine. "run() ms" is the wall time ' +
      "of onnxruntime's run of the stages: in the worker's inference thread per request (each batch's share, from the " +
      "replies' timings), and in the raw measurement per sample. Where the two differ, the gap is inside onnxruntime's " +
      "run, sharing the cores with the client and nats-server, not in the worker's handling around it.",
  );
  L.push(
    '',
    'Open-loop (Poisson) load at fractions of the measured batching capacity, one run each:',
    '',
    '| load | offered/s | completed | p50 ms | p99 ms |',
    '|---|---|---|---|---|',
  );
  for (const o of r.worker.open_loop)
    L.push(
      `| ${pct(o.load)} | ${f0(o.offered_per_second)} | ${o.completed} | ${f2(o.latency_ms.p50)} | ${f2(o.latency_ms.p99)} |`,
    );

  const cloud = r.cascade.find((c) => c.kind === 'all-cloud')!;
  const edge = r.cascade.find((c) => c.kind === 'all-edge')!;
  L.push(
    '',
    `## 4. The cascade against all-cloud and all-edge (${cloud.frames} sample images paced as a camera, one run each)`,
    '',
    `All-edge runs every stage on the edge (its accuracy is the last exit's on these images: ${pct(edge.accuracy)}). ` +
      'All-cloud offloads every image and runs the whole network to the last exit in the worker. MACs count the stages each side ran; ' +
      "cloud CPU is the worker process's user + system time, edge CPU the edge agent's (the bench process: its event loop, inference " +
      'threads and NATS client).',
    '',
    '| configuration | accuracy | vs last exit | offload rate | edge MMACs/frame | edge CPU ms/frame | cloud MMACs/frame | of all-cloud | cloud CPU ms/frame | of all-cloud | bytes/frame | latency p50 / p99 ms | targets |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  );
  for (const c of r.cascade.filter((x) => x.kind !== 'wire format')) {
    const drop = edge.accuracy - c.accuracy;
    const macsShare = c.cloud_macs_per_frame / cloud.cloud_macs_per_frame;
    const cpuShare = c.cloud_cpu_seconds_per_frame / cloud.cloud_cpu_seconds_per_frame;
    const target =
      c.kind === 'operating point' ? `${ok(drop <= 0.005)} / ${ok(cpuShare <= 0.4 && macsShare <= 0.4)}` : '';
    L.push(
      `| ${c.name} | ${pct(c.accuracy)} | ${drop >= 0 ? '-' : '+'}${f2(Math.abs(drop) * 100)} pt | ${pct(c.offload_rate)} | ` +
        `${f2(c.edge_macs_per_frame / 1e6)} | ${c.edge_cpu_seconds_per_frame === undefined ? '-' : f2(c.edge_cpu_seconds_per_frame * 1000)} | ` +
        `${f2(c.cloud_macs_per_frame / 1e6)} | ${pct(macsShare)} | ` +
        `${f2(c.cloud_cpu_seconds_per_frame * 1000)} | ${pct(cpuShare)} | ${f0(c.bytes_per_frame)} | ${f2(c.latency_ms.p50)} / ${f2(c.latency_ms.p99)} | ${target} |`,
    );
  }
  L.push(
    '',
    'Targets: accuracy within 0.5 points of the last exit / cloud compute at most 40 % of all-cloud (MACs and CPU).',
  );

  L.push(
    '',
    '## 5. Wire formats at `balanced`',
    '',
    '| offload | bytes per offload | accuracy | frames whose class differs from fp32 state |',
    '|---|---|---|---|',
  );
  for (const c of r.cascade.filter((x) => x.kind === 'wire format')) {
    L.push(
      `| ${c.mode === 'image' ? 'image only' : `state ${c.encoding}`} | ${f0(c.bytes_per_offload)} | ${pct(c.accuracy)} | ${c.changed_vs_fp32 ?? '–'} |`,
    );
  }
  L.push(
    '',
    'A general-purpose compressor on the carried state (zlib deflate, level 6, per sample):',
    '',
    '| encoding | state bytes | deflated (mean) | ratio |',
    '|---|---|---|---|',
  );
  for (const c of r.compression)
    L.push(`| ${c.encoding} | ${c.raw_state_bytes} | ${f0(c.deflate_state_bytes_mean)} | ${f2(c.ratio)} |`);

  const t = r.transport;
  L.push(
    '',
    `## 6. Transport (${t.requests} requests one at a time, ${t.payload_bytes}-byte state-mode request)`,
    '',
    '| path | p50 ms | p99 ms |',
    '|---|---|---|',
    `| bare NATS request-reply (64-byte reply) | ${f2(t.bare_nats_ms.p50)} | ${f2(t.bare_nats_ms.p99)} |`,
    `| worker request-reply | ${f2(t.worker_ms.p50)} | ${f2(t.worker_ms.p99)} |`,
    `| of which worker compute (p50) / queue (p50) | ${f2(t.worker_compute_ms_p50)} / ${f2(t.worker_queue_ms_p50)} | |`,
    '',
    `Added by the worker beyond bare NATS and its compute: ${f2(t.added_ms_p50)} ms at p50 (decode, validation, thread hand-off, reply).`,
    '',
  );
  return L.join('\n');
}
