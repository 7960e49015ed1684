import { startWorker } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeOptions, type EdgeResult, type Frame } from '@cascade/edge';
import { elementCount, encodeTensor, type Encoding } from '@cascade/proto';
import type { ModelDir } from '@cascade/runtime';
import { deflateSync } from 'node:zlib';
import { stageInputs } from './raw.js';
import { percentile, processCpuSeconds, sleep } from './stats.js';

export interface CascadeRun {
  name: string;
  kind: 'operating point' | 'all-cloud' | 'all-edge' | 'wire format';
  mode: string;
  encoding: string;
  frames: number;
  accuracy: number;
  offload_rate: number;
  fallbacks: number;
  cloud_macs_per_frame: number;
  cloud_cpu_seconds_per_frame: number;
  edge_macs_per_frame: number;
  /** CPU time of the edge agent's process (its event loop and inference threads) per frame. */
  edge_cpu_seconds_per_frame: number;
  bytes_per_frame: number;
  bytes_per_offload: number;
  latency_ms: { p50: number; p99: number };
  /** Frames whose class differs from the same configuration with an fp32 state (wire formats only). */
  changed_vs_fp32?: number;
}

/** Thresholds that send every frame to the last exit (thresholds above any confidence elsewhere). */
export function lastExitOnly(exits: number): number[] {
  return Array.from({ length: exits }, (_, i) => (i === exits - 1 ? 0 : 2));
}

/** Frames of the sample file, paced at `fps` like a camera. */
async function* paced(samples: string, limit: number, fps: number): AsyncIterable<Frame> {
  const start = performance.now();
  let i = 0;
  for await (const f of await openSource(samples, { size: 32, limit })) {
    const due = start + (i++ * 1000) / fps;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    yield { ...f, capturedUnixMs: Date.now() };
  }
}

/** Stages that ran for a result, given where the edge stopped and where the frame exited. */
function macs(model: ModelDir, r: EdgeResult, split: number, firstCloudStage: number): { edge: number; cloud: number } {
  const m = model.manifest;
  const stageOf = (exit: number) => m.exits[exit]!.stage;
  const sum = (from: number, to: number) => m.stages.slice(from, to + 1).reduce((a, s) => a + s.macs, 0);
  if (r.tier === 'edge') return { edge: sum(0, Math.min(split - 1, stageOf(Math.max(0, r.exit)))), cloud: 0 };
  return { edge: firstCloudStage === 0 ? 0 : sum(0, split - 1), cloud: sum(firstCloudStage, stageOf(r.exit)) };
}

export interface CascadeConfig {
  name: string;
  kind: CascadeRun['kind'];
  edge: Partial<EdgeOptions>;
  cloud: boolean;
}

/** The configurations compared: each operating point, all-cloud, all-edge, then the wire formats at `balanced`. */
export function cascadeConfigs(model: ModelDir): CascadeConfig[] {
  const m = model.manifest;
  const last = lastExitOnly(m.exits.length);
  return [
    ...m.operating_points.map((op) => ({
      name: op.name,
      kind: 'operating point' as const,
      edge: { operatingPoint: op.name },
      cloud: true,
    })),
    { name: 'all-cloud', kind: 'all-cloud', edge: { thresholds: last, mode: 'image' }, cloud: true },
    { name: 'all-edge', kind: 'all-edge', edge: { thresholds: last, split: m.stages.length }, cloud: false },
    ...(['fp32', 'fp16', 'int8'] as const).map((encoding) => ({
      name: `balanced, state ${encoding}`,
      kind: 'wire format' as const,
      edge: { operatingPoint: 'balanced', encoding },
      cloud: true,
    })),
    { name: 'balanced, image', kind: 'wire format', edge: { operatingPoint: 'balanced', mode: 'image' }, cloud: true },
  ];
}

export async function runCascade(
  model: ModelDir,
  nats: string,
  samples: string,
  c: CascadeConfig,
  o: { frames: number; fps: number; threads: number; workerArgs?: string[] },
): Promise<{ run: CascadeRun; results: EdgeResult[] }> {
  const worker = c.cloud
    ? await startWorker({
        model: model.path,
        nats,
        id: `bench-${c.name.replace(/\W+/g, '-')}`,
        extra: ['--threads', String(o.threads), '--metrics-port', '-1', ...(o.workerArgs ?? [])],
      })
    : undefined;
  const agent = await EdgeAgent.create(
    {
      model: model.path,
      id: 'bench-cascade',
      threads: o.threads,
      metricsPort: -1,
      timeoutMs: 5000,
      ...(c.cloud ? { nats } : {}),
      ...c.edge,
    },
    () => undefined,
  );
  const results: EdgeResult[] = [];
  try {
    const cpu0 = worker ? await processCpuSeconds(worker.process.pid!) : 0;
    const edgeCpu0 = process.cpuUsage();
    const frames = await agent.run(paced(samples, o.frames, o.fps), (r) => results.push(r));
    const edgeCpu = process.cpuUsage(edgeCpu0);
    const cpu = worker ? (await processCpuSeconds(worker.process.pid!)) - cpu0 : 0;
    const firstCloud = agent.options.mode === 'image' ? 0 : agent.split;
    let edgeMacs = 0;
    let cloudMacs = 0;
    for (const r of results) {
      const x = macs(model, r, agent.split, firstCloud);
      edgeMacs += x.edge;
      cloudMacs += x.cloud;
    }
    const sent = results.filter((r) => r.offload_bytes > 0);
    const lat = results.map((r) => r.latency_ms);
    return {
      results,
      run: {
        name: c.name,
        kind: c.kind,
        mode: agent.options.mode,
        encoding: agent.options.encoding,
        frames,
        accuracy: results.filter((r) => r.class === r.label).length / frames,
        offload_rate: results.filter((r) => r.outcome !== 'exited').length / frames,
        fallbacks: results.filter((r) => r.outcome === 'fallback').length,
        cloud_macs_per_frame: cloudMacs / frames,
        cloud_cpu_seconds_per_frame: cpu / frames,
        edge_macs_per_frame: edgeMacs / frames,
        edge_cpu_seconds_per_frame: (edgeCpu.user + edgeCpu.system) / 1e6 / frames,
        bytes_per_frame: sent.reduce((a, r) => a + r.offload_bytes, 0) / frames,
        bytes_per_offload: sent.length ? sent.reduce((a, r) => a + r.offload_bytes, 0) / sent.length : 0,
        latency_ms: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) },
      },
    };
  } finally {
    await agent.shutdown();
    await worker?.stop();
  }
}

export interface Compression {
  encoding: Encoding;
  raw_state_bytes: number;
  deflate_state_bytes_mean: number;
  ratio: number;
}

/** Whether a general-purpose compressor (zlib deflate) pays on the carried state of real images. */
export async function compression(model: ModelDir, images: Uint8Array, n: number): Promise<Compression[]> {
  const feeds = (await stageInputs(model, images, n))[1]!;
  const name = model.manifest.stages[1]!.inputs.find((t) => t.name !== 'image')!.name;
  const t = feeds[name]!;
  const per = elementCount(t.dims.slice(1));
  return (['int8', 'fp16'] as const).map((encoding) => {
    let raw = 0;
    let packed = 0;
    for (let i = 0; i < n; i++) {
      const e = encodeTensor((t.data as Float32Array).slice(i * per, (i + 1) * per), t.dims.slice(1), encoding);
      raw = e.data.byteLength;
      packed += deflateSync(e.data, { level: 6 }).byteLength;
    }
    return { encoding, raw_state_bytes: raw, deflate_state_bytes_mean: packed / n, ratio: packed / n / raw };
  });
}
