import {
  CascadeError,
  ConfigError,
  ERROR_CODES,
  resultMessageId,
  subjects,
  v1,
  type FrameResultMessage,
} from '@cascade/proto';
import {
  decide,
  exitsHere,
  loadModelDir,
  NatsLink,
  operatingPoint,
  serveMetrics,
  StageRunner,
  type Feeds,
  type Log,
  type MetricsServer,
  type ModelDir,
} from '@cascade/runtime';
import { randomBytes } from 'node:crypto';
import { liveRoutes } from './live.js';
import { EdgeMetrics } from './metrics.js';
import { Offloader, type FallbackReason, type LocalAnswer, type OffloadOutcome } from './offload.js';
import { compileEdgeOptions, type CompiledEdgeOptions, type EdgeOptions } from './options.js';
import { Outbox } from './outbox.js';
import { ResultsPublisher } from './results.js';
import type { Frame } from './sources.js';

export type Outcome = 'exited' | 'offloaded' | 'fallback' | 'error';

/** The one result every frame yields. */
export interface EdgeResult {
  frame: string;
  edge: string;
  /** n-th frame this agent took in (from 1); with the agent's run id it names the result in the results stream. */
  sequence: number;
  label?: number;
  class: number;
  name: string;
  confidence: number;
  exit: number;
  tier: 'edge' | 'cloud';
  outcome: Outcome;
  latency_ms: number;
  offload_bytes: number;
  /** Why a hard frame was answered locally. */
  fallback_reason?: FallbackReason;
  worker?: string;
  error?: string;
  model_version: string;
}

export type EdgeState = 'running' | 'closing' | 'closed';

const stderrLog: Log = (event, fields) =>
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), event, ...fields })}\n`);

/** One frame on its way through the agent. */
interface FrameContext {
  frame: Frame;
  sequence: number;
  started: number;
}

/**
 * An edge agent: runs stages 0..split-1 in a worker thread, ends a frame at the first confident exit, and offloads
 * the rest over NATS with a deadline; any failure of the offload answers with the best local exit (a fallback).
 * It starts without NATS and connects when it can; every result also goes to the results stream through an outbox.
 */
export class EdgeAgent {
  state: EdgeState = 'running';
  /** Names this start of the agent in result ids (`<edge>/<run>/<sequence>`). */
  readonly runId = randomBytes(6).toString('hex');
  private sequence = 0;
  private inflight = 0;
  private slotWaiters: (() => void)[] = [];
  private readonly pending = new Set<Promise<void>>();
  private metricsServer: MetricsServer | undefined;
  private readonly offloader: Offloader;

  private constructor(
    readonly options: CompiledEdgeOptions,
    readonly model: ModelDir,
    readonly split: number,
    readonly thresholds: number[],
    private readonly runner: StageRunner,
    private readonly link: NatsLink | undefined,
    private readonly publisher: ResultsPublisher | undefined,
    private readonly log: Log,
    readonly metrics: EdgeMetrics,
  ) {
    this.offloader = new Offloader(model.manifest, split, thresholds, options, link);
  }

  static async create(options: EdgeOptions, log: Log = stderrLog): Promise<EdgeAgent> {
    const o = compileEdgeOptions(options);
    const model = await loadModelDir(o.model);
    const m = model.manifest;
    const split = o.split ?? m.default_split ?? 1;
    if (split > m.stages.length) throw new ConfigError(`split ${split}: the model has ${m.stages.length} stages`);
    const op = o.thresholds ? undefined : operatingPoint(m, o.operatingPoint);
    const thresholds = o.thresholds ?? op!.thresholds;
    if (thresholds.length !== m.exits.length) {
      throw new ConfigError(`thresholds: ${m.exits.length} needed (one per exit), got ${thresholds.length}`);
    }
    const metrics = new EdgeMetrics({ edge: o.id, model: m.name, modelVersion: m.version, backend: o.backend });
    metrics.expectedOffloadRate.set(op?.test && split === (m.default_split ?? 1) ? 1 - op.test.edge_exit_rate : -1);
    const runner = await StageRunner.create(model, { last: split - 1, threads: o.threads, backend: o.backend });
    let link: NatsLink | undefined;
    let publisher: ResultsPublisher | undefined;
    if (o.nats) {
      link = await NatsLink.open({
        servers: o.nats,
        via: o.natsVia,
        name: `cascade-edge ${o.id}`,
        auth: o.natsAuth,
        log,
        firstConnect: 'background',
      });
      // A short wait, so the first hard frames are not answered locally only because the connection is a few ms old.
      if (!(await link.waitConnected(o.connectWaitMs)))
        log('edge_starting_without_nats', { nats: o.nats, waited_ms: o.connectWaitMs });
      const outbox = Outbox.open({ ...o.outbox }, (reason, n) => {
        metrics.resultsDropped.inc({ reason }, n);
        log('results_dropped', {
          reason,
          count: n,
          limits: { max_count: o.outbox.maxCount, max_age_ms: o.outbox.maxAgeMs },
        });
      });
      if (outbox.size > 0) log('outbox_recovered', { results: outbox.size, dir: o.outbox.dir });
      publisher = new ResultsPublisher(outbox, link, log, (n) => metrics.resultsPublished.inc(n));
      metrics.probe.pending = () => publisher!.pending;
    }
    const agent = new EdgeAgent(o, model, split, thresholds, runner, link, publisher, log, metrics);
    metrics.probe.reachable = () => (link?.connected ? agent.reachable : 0);
    if (o.metricsPort >= 0) {
      try {
        agent.metricsServer = await serveMetrics(metrics.registry, o.metricsPort, o.metricsHost, {
          ...liveRoutes(metrics.registry, o.id),
          '/healthz': async () => ({ status: 200, type: 'text/plain', body: 'ok\n' }),
          '/readyz': async () => {
            const ready = agent.state === 'running' && (!link || link.connected);
            return {
              status: ready ? 200 : 503,
              type: 'text/plain',
              body: ready ? 'ready\n' : `not ready: ${link?.connected === false ? 'NATS disconnected' : agent.state}\n`,
            };
          },
        });
      } catch (err) {
        await agent.close();
        throw err;
      }
    }
    log('edge_started', {
      id: o.id,
      run: agent.runId,
      model: m.name,
      version: m.version,
      split,
      mode: o.mode,
      encoding: o.encoding,
      backend: o.backend,
      nats: o.nats ?? null,
      outbox: o.outbox.dir ?? 'memory',
      metrics_port: agent.metricsServer?.port ?? null,
    });
    return agent;
  }

  /** 1 after a reply from a worker, 0 after a timeout or no responders. */
  private reachable = 0;

  /**
   * Processes every frame of `frames`, calling `onResult` exactly once per frame (in completion order).
   * Local stages run `pipeline` frames at a time; offloads overlap up to maxInflight, beyond that the source waits.
   */
  async run(frames: AsyncIterable<Frame>, onResult: (r: EdgeResult) => void): Promise<number> {
    if (this.state !== 'running')
      throw new CascadeError(ERROR_CODES.STATE, `run() on an edge agent that is ${this.state}`);
    let count = 0;
    const emit = (r: EdgeResult) => {
      this.observe(r);
      onResult(r);
      this.publish(r);
    };
    const local = new Set<Promise<void>>();
    for await (const frame of frames) {
      count++;
      const ctx: FrameContext = { frame, sequence: ++this.sequence, started: performance.now() };
      const job = this.runLocal(frame).then(
        async (out) => {
          if (!('state' in out)) return emit(this.result(ctx, out, 'edge', 'exited'));
          await this.acquireSlot();
          const offload = this.offload(ctx, out.best, out.state)
            .then(emit, (err: Error) => emit(this.errorResult(ctx, err)))
            .finally(() => {
              this.releaseSlot();
              this.pending.delete(offload);
            });
          this.pending.add(offload);
        },
        (err: Error) => emit(this.errorResult(ctx, err)),
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
  private async runLocal(frame: Frame): Promise<LocalAnswer | { best: LocalAnswer; state: Feeds }> {
    const m = this.model.manifest;
    let carried: Feeds = {};
    let best: LocalAnswer | undefined;
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

  private async offload(ctx: FrameContext, best: LocalAnswer, carried: Feeds): Promise<EdgeResult> {
    const { request, bytes } = this.offloader.build(ctx.frame.pixels, best, carried);
    this.metrics.inflight.inc();
    const sent = performance.now();
    let out: OffloadOutcome;
    try {
      out = await this.offloader.send(request, bytes);
    } finally {
      this.metrics.inflight.dec();
    }
    if (out.bytes > 0) this.metrics.offloadBytes.observe(out.bytes);
    const label = out.kind === 'answered' ? 'ok' : out.reason;
    if (out.bytes > 0) this.metrics.offloadSeconds.observe({ result: label }, (performance.now() - sent) / 1000);
    if (out.kind === 'answered') {
      this.reachable = 1;
      return { ...this.result(ctx, out.answer, 'cloud', 'offloaded', out.bytes), worker: out.worker };
    }
    if (out.reason === 'timeout' || out.reason === 'no_responders' || out.reason === 'disconnected') this.reachable = 0;
    if (out.reason === 'too_large') this.log('offload_too_large', { frame: ctx.frame.id, detail: out.detail });
    return {
      ...this.result(ctx, best, 'edge', 'fallback', out.bytes),
      fallback_reason: out.reason,
      ...(out.detail && out.reason !== 'timeout' && out.reason !== 'no_responders' ? { error: out.detail } : {}),
    };
  }

  private observe(r: EdgeResult): void {
    this.metrics.frames.inc({ outcome: r.outcome });
    this.metrics.frameSeconds.observe({ outcome: r.outcome }, r.latency_ms / 1000);
    if (r.fallback_reason) this.metrics.fallbacks.inc({ reason: r.fallback_reason });
    if (r.exit >= 0) {
      this.metrics.exits.inc({ exit: String(r.exit), tier: r.tier });
      this.metrics.confidence.observe({ tier: r.tier }, r.confidence);
    }
  }

  /** Whether close() has been called. */
  get isClosed(): boolean {
    return this.state !== 'running';
  }

  /** Port of the /metrics endpoint (undefined when disabled). */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** Whether the agent's NATS connection is up now. */
  get connected(): boolean {
    return this.link?.connected ?? false;
  }

  /** Results not yet acknowledged by the results stream. */
  get resultsPending(): number {
    return this.publisher?.pending ?? 0;
  }

  private result(ctx: FrameContext, d: LocalAnswer, tier: 'edge' | 'cloud', outcome: Outcome, bytes = 0): EdgeResult {
    return {
      frame: ctx.frame.id,
      edge: this.options.id,
      sequence: ctx.sequence,
      ...(ctx.frame.label !== undefined ? { label: ctx.frame.label } : {}),
      class: d.classIndex,
      name: this.model.manifest.classes[d.classIndex] ?? '',
      confidence: d.confidence,
      exit: d.exit,
      tier,
      outcome,
      latency_ms: performance.now() - ctx.started,
      offload_bytes: bytes,
      model_version: this.model.manifest.version,
    };
  }

  private errorResult(ctx: FrameContext, err: Error): EdgeResult {
    this.log('frame_error', { frame: ctx.frame.id, error: err.message });
    return {
      ...this.result(ctx, { classIndex: -1, confidence: 0, exit: -1 }, 'edge', 'error'),
      name: '',
      error: err.message,
    };
  }

  private publish(r: EdgeResult): void {
    if (!this.publisher) return;
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
      runId: this.runId,
      sequence: r.sequence,
    };
    const id = resultMessageId(this.options.id, this.runId, r.sequence);
    this.publisher.publish(id, subjects.results(this.options.id), v1.FrameResult.encode(msg).finish());
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

  /**
   * Finishes offloads in flight, waits up to `flushTimeoutMs` for the results stream to acknowledge every result
   * (what is left stays in the outbox for the next start), then closes NATS and the stage runner. Idempotent.
   */
  async close(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'closing';
    await Promise.all(this.pending);
    if (this.publisher) {
      const flushed = await this.publisher.flush(this.options.flushTimeoutMs);
      if (!flushed)
        this.log('results_kept_in_outbox', {
          results: this.publisher.pending,
          dir: this.options.outbox.dir ?? 'memory (lost)',
        });
      this.publisher.close();
    }
    await this.link?.close();
    await this.runner.close();
    await this.metricsServer?.close();
    this.state = 'closed';
  }
}
