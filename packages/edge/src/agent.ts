import {
  encodeTensor,
  imageTensor,
  payloadBytes,
  subjects,
  toWireTensor,
  v1,
  type FrameResultMessage,
  type TensorMessage,
} from '@cascade/proto';
import {
  carriedOutputs,
  decide,
  exitsHere,
  loadModelDir,
  operatingPoint,
  StageRunner,
  type Feeds,
  type ModelDir,
} from '@cascade/runtime';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { natsConnectOptions, serveMetrics, type MetricsServer } from '@cascade/runtime';
import { liveRoutes } from './live.js';
import { EdgeMetrics } from './metrics.js';
import { randomUUID } from 'node:crypto';
import { compileEdgeOptions, EdgeConfigError, type CompiledEdgeOptions, type EdgeOptions } from './options.js';
import type { Frame } from './sources.js';

export type Outcome = 'exited' | 'offloaded' | 'fallback' | 'error';

/** The one result every frame yields. */
export interface EdgeResult {
  frame: string;
  edge: string;
  label?: number;
  class: number;
  name: string;
  confidence: number;
  exit: number;
  tier: 'edge' | 'cloud';
  outcome: Outcome;
  latency_ms: number;
  offload_bytes: number;
  /** Why a hard frame was answered locally: timeout, no_responders, an error code, too_large, no_cloud. */
  fallback_reason?: string;
  worker?: string;
  error?: string;
  model_version: string;
}

type Log = (event: string, fields?: Record<string, unknown>) => void;
const stderrLog: Log = (event, fields) => process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), event, ...fields })}\n`);

interface Local {
  classIndex: number;
  confidence: number;
  exit: number;
}

/**
 * An edge agent: runs stages 0..split-1 in a worker thread, ends a frame at the first confident exit, and offloads
 * the rest over NATS with a deadline; any failure of the offload answers with the best local exit (a fallback).
 */
export class EdgeAgent {
  private inflight = 0;
  private slotWaiters: (() => void)[] = [];
  private readonly pending = new Set<Promise<void>>();
  private closed = false;
  private metricsServer: MetricsServer | undefined;

  private constructor(
    readonly options: CompiledEdgeOptions,
    readonly model: ModelDir,
    readonly split: number,
    readonly thresholds: number[],
    private readonly runner: StageRunner,
    private readonly nc: NatsConnection | undefined,
    private readonly log: Log,
    readonly metrics: EdgeMetrics,
  ) {}

  static async create(options: EdgeOptions, log: Log = stderrLog): Promise<EdgeAgent> {
    const o = compileEdgeOptions(options);
    const model = await loadModelDir(o.model);
    const m = model.manifest;
    const split = o.split ?? m.default_split ?? 1;
    if (split > m.stages.length) throw new EdgeConfigError(`split ${split}: the model has ${m.stages.length} stages`);
    const op = o.thresholds ? undefined : operatingPoint(m, o.operatingPoint);
    const thresholds = o.thresholds ?? op!.thresholds;
    if (thresholds.length !== m.exits.length) {
      throw new EdgeConfigError(`thresholds: ${m.exits.length} needed (one per exit), got ${thresholds.length}`);
    }
    const runner = await StageRunner.create(model, { last: split - 1, threads: o.threads, backend: o.backend });
    let nc: NatsConnection | undefined;
    if (o.nats) {
      try {
        nc = await connect({ servers: o.nats.split(','), name: `cascade-edge ${o.id}`, maxReconnectAttempts: -1, ...natsConnectOptions(o.natsAuth) });
      } catch (err) {
        await runner.close();
        throw err;
      }
    }
    const metrics = new EdgeMetrics({ edge: o.id, model: m.name, modelVersion: m.version, backend: o.backend });
    metrics.expectedOffloadRate.set(op?.test && split === (m.default_split ?? 1) ? 1 - op.test.edge_exit_rate : -1);
    metrics.cloudReachable.set(nc ? 1 : 0);
    const agent = new EdgeAgent(o, model, split, thresholds, runner, nc, log, metrics);
    if (o.metricsPort >= 0) {
      try {
        agent.metricsServer = await serveMetrics(metrics.registry, o.metricsPort, o.metricsHost, {
          ...liveRoutes(metrics.registry, o.id),
          '/healthz': async () => ({ status: 200, type: 'text/plain', body: 'ok\n' }),
          '/readyz': async () => {
            const ready = !agent.isClosed && (!nc || !nc.isClosed());
            return { status: ready ? 200 : 503, type: 'text/plain', body: ready ? 'ready\n' : 'not ready\n' };
          },
        });
      } catch (err) {
        await agent.close();
        throw err;
      }
    }
    log('edge_started', { id: o.id, model: m.name, version: m.version, split, mode: o.mode, encoding: o.encoding, backend: o.backend,
      nats: Boolean(nc), metrics_port: agent.metricsServer?.port ?? null });
    return agent;
  }

  /**
   * Processes every frame of `frames`, calling `onResult` exactly once per frame (in completion order).
   * Local stages run one frame at a time; offloads overlap up to maxInflight.
   */
  async run(frames: AsyncIterable<Frame>, onResult: (r: EdgeResult) => void): Promise<number> {
    let count = 0;
    const emit = (r: EdgeResult) => {
      this.observe(r);
      onResult(r);
      this.publish(r);
    };
    // With pipeline > 1 the inference thread starts the next frame while this thread handles the previous one's
    // result (more frames/s, each frame may wait behind another). Offloads overlap up to maxInflight; beyond that
    // the source waits.
    const local = new Set<Promise<void>>();
    for await (const frame of frames) {
      count++;
      const started = performance.now();
      const job = this.runLocal(frame).then(
        async (out) => {
          if (!('state' in out)) return emit(this.result(frame, started, out, 'edge', 'exited'));
          await this.acquireSlot();
          const offload = this.offload(frame, started, out.best, out.state)
            .then(emit, (err: Error) => emit(this.errorResult(frame, started, err)))
            .finally(() => {
              this.releaseSlot();
              this.pending.delete(offload);
            });
          this.pending.add(offload);
        },
        (err: Error) => emit(this.errorResult(frame, started, err)),
      );
      local.add(job);
      void job.finally(() => local.delete(job));
      if (local.size >= this.options.pipeline) await Promise.race(local);
    }
    await Promise.all(local);
    await Promise.all(this.pending);
    return count;
  }

  /** Edge stages with early exit: the exit that ends the frame, or the best local exit and the carried state. */
  private async runLocal(frame: Frame): Promise<Local | { best: Local; state: Feeds }> {
    const m = this.model.manifest;
    let carried: Feeds = {};
    let best: Local | undefined;
    for (let s = 0; s < this.split; s++) {
      const stage = m.stages[s]!;
      const feeds: Feeds = { image: { data: frame.pixels.slice(), dims: [1, ...m.input.shape] } };
      for (const t of stage.inputs) if (t.name !== 'image') feeds[t.name] = carried[t.name]!;
      const { outputs, computeMs } = await this.runner.run(s, feeds);
      this.metrics.stageSeconds.observe({ stage: String(s) }, computeMs / 1000);
      for (const e of stage.exits) {
        const d = decide(outputs[m.exits[e]!.output]!.data as Float32Array);
        best = { ...d, exit: e };
        if (exitsHere(e, d.confidence, this.thresholds)) return best;
      }
      carried = outputs;
    }
    return { best: best!, state: carried };
  }

  private async offload(frame: Frame, started: number, best: Local, carried: Feeds): Promise<EdgeResult> {
    const m = this.model.manifest;
    if (!this.nc) return this.result(frame, started, best, 'edge', 'fallback', 0, 'no_cloud');
    const state: TensorMessage[] = [];
    let bytes = frame.pixels.byteLength;
    if (this.options.mode === 'state') {
      for (const spec of carriedOutputs(m, this.split - 1)) {
        const t = carried[spec.name]!;
        const enc = encodeTensor(t.data as Float32Array, t.dims.slice(1), this.options.encoding);
        bytes += payloadBytes(enc);
        state.push(toWireTensor(spec.name, enc));
      }
    }
    const request = v1.InferRequest.encode({
      requestId: randomUUID(),
      edgeId: this.options.id,
      model: m.name,
      modelVersion: m.version,
      firstStage: this.options.mode === 'state' ? this.split : 0,
      image: imageTensor(frame.pixels, m.input.shape),
      state,
      deadlineUnixMs: Date.now() + this.options.timeoutMs,
      edgeExit: best.exit,
      edgeConfidence: best.confidence,
      edgeClass: best.classIndex,
      thresholds: this.thresholds,
    }).finish();
    const limit = this.nc.info?.max_payload ?? 1024 * 1024;
    if (request.byteLength > limit) {
      this.log('offload_too_large', { frame: frame.id, bytes: request.byteLength, max_payload: limit });
      return this.result(frame, started, best, 'edge', 'fallback', 0, 'too_large');
    }
    this.metrics.offloadBytes.observe(bytes);
    this.metrics.inflight.inc();
    const sent = performance.now();
    let result = 'ok';
    try {
      const msg = await this.nc.request(subjects.infer(m.name), request, { timeout: this.options.timeoutMs });
      this.metrics.cloudReachable.set(1);
      const reply = v1.InferReply.decode(msg.data);
      if (reply.prediction) {
        const p = reply.prediction;
        return {
          ...this.result(frame, started, { classIndex: p.classIndex ?? 0, confidence: p.confidence ?? 0, exit: p.exit ?? 0 }, 'cloud',
            'offloaded', bytes),
          worker: reply.workerId ?? '',
        };
      }
      const code = reply.error ? v1.ErrorCode[reply.error.code ?? 0] : 'EMPTY_REPLY';
      result = String(code);
      return { ...this.result(frame, started, best, 'edge', 'fallback', bytes, String(code)), error: reply.error?.message ?? '' };
    } catch (err) {
      result = fallbackReason(err as Error);
      if (result === 'timeout' || result === 'no_responders') this.metrics.cloudReachable.set(0);
      return this.result(frame, started, best, 'edge', 'fallback', bytes, result);
    } finally {
      this.metrics.inflight.dec();
      this.metrics.offloadSeconds.observe({ result: result.startsWith('nats:') ? 'error' : result }, (performance.now() - sent) / 1000);
    }
  }

  private observe(r: EdgeResult): void {
    this.metrics.frames.inc({ outcome: r.outcome });
    this.metrics.frameSeconds.observe({ outcome: r.outcome }, r.latency_ms / 1000);
    if (r.exit >= 0) {
      this.metrics.exits.inc({ exit: String(r.exit), tier: r.tier });
      this.metrics.confidence.observe({ tier: r.tier }, r.confidence);
    }
  }

  /** Whether close() has been called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Port of the /metrics endpoint (undefined when disabled). */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  private result(frame: Frame, started: number, d: Local, tier: 'edge' | 'cloud', outcome: Outcome, bytes = 0,
    reason?: string): EdgeResult {
    return {
      frame: frame.id,
      edge: this.options.id,
      ...(frame.label !== undefined ? { label: frame.label } : {}),
      class: d.classIndex,
      name: this.model.manifest.classes[d.classIndex] ?? '',
      confidence: d.confidence,
      exit: d.exit,
      tier,
      outcome,
      latency_ms: performance.now() - started,
      offload_bytes: bytes,
      ...(reason ? { fallback_reason: reason } : {}),
      model_version: this.model.manifest.version,
    };
  }

  private errorResult(frame: Frame, started: number, err: Error): EdgeResult {
    this.log('frame_error', { frame: frame.id, error: err.message });
    return {
      frame: frame.id,
      edge: this.options.id,
      ...(frame.label !== undefined ? { label: frame.label } : {}),
      class: -1,
      name: '',
      confidence: 0,
      exit: -1,
      tier: 'edge',
      outcome: 'error',
      latency_ms: performance.now() - started,
      offload_bytes: 0,
      error: err.message,
      model_version: this.model.manifest.version,
    };
  }

  private publish(r: EdgeResult): void {
    if (!this.nc || this.nc.isClosed()) return;
    const msg: FrameResultMessage = {
      frameId: r.frame,
      edgeId: r.edge,
      classIndex: r.class,
      label: r.name,
      confidence: r.confidence,
      exit: r.exit,
      tier: r.tier,
      outcome: r.outcome,
      latencyMs: r.latency_ms,
      offloadBytes: r.offload_bytes,
      modelVersion: r.model_version,
      capturedUnixMs: Date.now(),
      error: r.error ?? r.fallback_reason ?? '',
    };
    try {
      this.nc.publish(subjects.results(this.options.id), v1.FrameResult.encode(msg).finish());
    } catch (err) {
      this.log('publish_failed', { error: (err as Error).message });
    }
  }

  private acquireSlot(): Promise<void> {
    if (this.inflight < this.options.maxInflight) {
      this.inflight++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.slotWaiters.push(() => resolve()));
  }

  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.inflight--;
  }

  /** Closes NATS (flushing published results) and the stage runner; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.pending);
    await this.nc?.drain().catch(() => undefined);
    await this.runner.close();
    await this.metricsServer?.close();
  }
}

function fallbackReason(err: Error): string {
  const cause = (err as { cause?: Error }).cause;
  if (err.name === 'TimeoutError' || cause?.name === 'TimeoutError') return 'timeout';
  if (err.name === 'NoRespondersError' || cause?.name === 'NoRespondersError') return 'no_responders';
  if ((err as { isNoResponders?: () => boolean }).isNoResponders?.()) return 'no_responders';
  return `nats: ${err.message}`;
}
