import { CascadeError, ConfigError, ERROR_CODES, type EdgeHeartbeat, type EdgeSettings } from '@cascade/proto';
import {
  createExecutor,
  loadModelDir,
  operatingPoint,
  type Manifest,
  type ModelDir,
  type StageExecutor,
} from '@cascade/runtime';
import { NatsLink, resolveModel, serveMetrics, stderrLog, type Log, type MetricsServer } from '@cascade/service';
import { randomBytes } from 'node:crypto';
import { FramePath, type EdgeResult, type FrameContext } from './frame.js';
import { liveRoutes } from './live.js';
import { Adaptation, type AdaptSettings } from './adapt.js';
import { FleetClient } from './fleet.js';
import { EdgeMetrics } from './metrics.js';
import { Offloader, type ExitView } from './offload.js';
import { compileEdgeOptions, type CompiledEdgeOptions, type EdgeOptions } from './options.js';
import { Outbox } from './outbox.js';
import { ResultsPublisher, toFrameResult } from './results.js';
import type { Frame } from './sources.js';

export type { EdgeResult, Outcome } from './frame.js';

/** `running` until close(); `closing` while it finishes offloads and flushes results; then `closed`. */
export type EdgeState = 'running' | 'closing' | 'closed';

/**
 * An edge agent: runs stages 0..split-1 in a worker thread, ends a frame at the first confident exit, and offloads
 * the rest over NATS with a deadline; any failure of the offload answers with the best local exit (a fallback).
 * It starts without NATS and connects when it can; every result also goes to the results stream through an outbox.
 * What happens to one frame is in frame.ts; this file is the lifecycle and the loop.
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
  /** 1 after a reply from a worker, 0 after a timeout, no responders or a disconnection. */
  private reachable = 0;
  private readonly path: FramePath;
  /** Shadow sampling, the accuracy estimate and the threshold controller. */
  readonly adapt: Adaptation;
  /** The fleet configuration and registry (with NATS). */
  fleet: FleetClient | undefined;
  /** The operating point in force ('custom' for thresholds). */
  operatingPointName: string;

  private constructor(
    readonly options: CompiledEdgeOptions,
    readonly model: ModelDir,
    readonly split: number,
    readonly thresholds: number[],
    private readonly runner: StageExecutor,
    private readonly link: NatsLink | undefined,
    private readonly publisher: ResultsPublisher | undefined,
    private readonly log: Log,
    readonly metrics: EdgeMetrics,
  ) {
    const offloader = new Offloader(model.manifest, split, thresholds, options, link);
    this.path = new FramePath(options.id, model, split, thresholds, runner, offloader, metrics, log);
    const sendShadow = link
      ? (pixels: Uint8Array) => {
          const { request, bytes } = offloader.build(pixels, {}, { shadow: true });
          return offloader.send(request, bytes, options.shadowTimeoutMs);
        }
      : undefined;
    const edgeExits = model.manifest.stages.slice(0, split).reduce((n, s) => n + s.exits.length, 0);
    const { op, budget } = pointOf(model.manifest, options);
    this.operatingPointName = op?.name ?? 'custom';
    this.adapt = new Adaptation(model.manifest, edgeExits, thresholds, [...thresholds], adaptSettings(options, budget), options.shadowWindow, metrics, log, sendShadow); // prettier-ignore
    if (options.mode === 'auto') {
      const stages = model.manifest.stages;
      const cloud = (first: number) => stages.slice(first).reduce((n, s) => n + s.macs, 0);
      this.adapt.chooseModes(
        { state: cloud(split), image: cloud(0) },
        { bytesPerKB: options.bytesWeight, perMMAC: options.computeWeight },
      );
    }
  }

  static async create(options: EdgeOptions, log: Log = stderrLog): Promise<EdgeAgent> {
    const o = compileEdgeOptions(options);
    const dir = await resolveModel(o.model, { ...(o.nats ? { servers: o.nats } : {}), auth: o.natsAuth, ...(o.modelCache ? { cache: o.modelCache } : {}), log }); // prettier-ignore
    const model = await loadModelDir(dir);
    const m = model.manifest;
    const split = o.split ?? m.default_split ?? 1;
    if (split > m.stages.length) throw new ConfigError(`split ${split}: the model has ${m.stages.length} stages`);
    const thresholds = [...pointOf(m, o).base]; // the controller moves these, in place
    const metrics = new EdgeMetrics({ edge: o.id, model: m.name, modelVersion: m.version, backend: o.backend });
    metrics.expectedOffloadRate.set(promisedOffloadRate(m, o, split, {}));
    const {
      executor: runner,
      thread,
      medianMs,
    } = await createExecutor(model, {
      last: split - 1,
      threads: o.threads,
      backend: o.backend,
      thread: o.inferenceThread,
      probe: () => ({
        image: { data: new Uint8Array(m.input.shape.reduce((a, b) => a * b, 1)), dims: [1, ...m.input.shape] },
      }),
    });
    let link: NatsLink | undefined;
    let publisher: ResultsPublisher | undefined;
    if (o.nats) {
      const name = `cascade-edge ${o.id}`;
      link = await NatsLink.open({
        servers: o.nats,
        via: o.natsVia,
        name,
        auth: o.natsAuth,
        log,
        firstConnect: 'background',
      });
      // A short wait, so the first hard frames are not answered locally only because the connection is a few ms old.
      if (!(await link.waitConnected(o.connectWaitMs))) {
        log('edge_starting_without_nats', { nats: o.nats, waited_ms: o.connectWaitMs });
      }
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
    agent.adapt.start(o.controlIntervalMs);
    if (link && o.fleet) {
      agent.fleet = new FleetClient(link, o.id, agent, {
        applied: () => metrics.configUpdates.inc({ result: 'applied' }),
        refused: () => metrics.configUpdates.inc({ result: 'refused' }),
      }, log); // prettier-ignore
      agent.fleet.start();
    }
    metrics.probe.reachable = () => (link?.connected ? agent.reachable : 0);
    if (o.metricsPort >= 0) {
      try {
        agent.metricsServer = await serveMetrics(metrics.registry, o.metricsPort, o.metricsHost, {
          ...liveRoutes(metrics.registry, o.id),
          '/healthz': async () => ({ status: 200, type: 'text/plain', body: 'ok\n' }),
          '/readyz': async () => {
            const ready = agent.state === 'running' && (!link || link.connected);
            const why = link?.connected === false ? 'NATS disconnected' : agent.state;
            return { status: ready ? 200 : 503, type: 'text/plain', body: ready ? 'ready\n' : `not ready: ${why}\n` };
          },
        });
      } catch (err) {
        await agent.close();
        throw err;
      }
    }
    log('edge_started', {
      id: o.id, run: agent.runId, model: m.name, version: m.version, split, mode: o.mode, encoding: o.encoding,
      backend: o.backend, nats: o.nats ?? null, outbox: o.outbox.dir ?? 'memory', metrics_port: agent.metricsServer?.port ?? null,
      inference_thread: thread, ...(medianMs !== undefined ? { edge_stages_ms: Math.round(medianMs * 1000) / 1000 } : {}),
    }); // prettier-ignore
    return agent;
  }

  /**
   * Processes every frame of `frames`, calling `onResult` exactly once per frame (in completion order).
   * Local stages run `pipeline` frames at a time; offloads overlap up to maxInflight, beyond that the source waits.
   */
  async run(frames: AsyncIterable<Frame>, onResult: (r: EdgeResult) => void): Promise<number> {
    if (this.state !== 'running')
      throw new CascadeError(ERROR_CODES.STATE, `run() on an edge agent that is ${this.state}`);
    let count = 0;
    const emit = (ctx: FrameContext, r: EdgeResult) => {
      this.path.observe(r);
      this.adapt.observe(r);
      onResult(r);
      if (this.publisher) {
        const { id, subject, data } = toFrameResult(r, this.runId, ctx.frame.capturedUnixMs);
        this.publisher.publish(id, subject, data);
      }
    };
    const setReachable = (up: boolean) => (this.reachable = up ? 1 : 0);
    const local = new Set<Promise<void>>();
    for await (const frame of frames) {
      count++;
      const ctx: FrameContext = { frame, sequence: ++this.sequence, started: performance.now() };
      const job = this.path.local(frame).then(
        async (out) => {
          this.adapt.frame(out.views);
          const sampled = this.adapt.sample();
          if ('exited' in out) {
            emit(ctx, this.path.result(ctx, out.exited, 'edge', 'exited'));
            if (sampled) this.adapt.shadow(frame.pixels);
            return;
          }
          await this.acquireSlot();
          const record = (exits: ExitView[]) => this.adapt.record(out.views, exits);
          const offload = this.path
            .offload(ctx, out.best, out.state, setReachable, sampled, record, this.adapt.modes)
            .then(
              (r) => emit(ctx, r),
              (err: Error) => emit(ctx, this.path.errorResult(ctx, err)),
            )
            .finally(() => {
              this.releaseSlot();
              this.pending.delete(offload);
            });
          this.pending.add(offload);
        },
        (err: Error) => emit(ctx, this.path.errorResult(ctx, err)),
      );
      local.add(job);
      void job.finally(() => local.delete(job));
      if (local.size >= this.options.pipeline) await Promise.race(local);
    }
    await Promise.all(local);
    await Promise.all(this.pending);
    return count;
  }

  /**
   * Applies settings from the fleet configuration over the command's own options (a field not set keeps the option):
   * operating point or thresholds, shadow rate, controller and its budgets. Throws a ConfigError, changing nothing,
   * when they do not fit the model.
   */
  apply(s: EdgeSettings): void {
    const m = this.model.manifest;
    const o = this.options;
    const { op, base, budget } = pointOf(m, o, s);
    const settings = adaptSettings(o, budget);
    if (s.shadow_rate !== undefined) settings.shadowRate = s.shadow_rate;
    if (s.controller !== undefined) settings.controller = s.controller;
    if (s.latency_target_ms !== undefined) settings.latencyTargetMs = s.latency_target_ms;
    if (s.bandwidth_bytes_per_s !== undefined) settings.bandwidthBytesPerS = s.bandwidth_bytes_per_s;
    this.adapt.apply(settings, base);
    this.operatingPointName = op?.name ?? 'custom';
    this.metrics.expectedOffloadRate.set(promisedOffloadRate(m, o, this.split, s));
  }

  /** This edge's entry in the fleet registry. */
  heartbeat(): Omit<EdgeHeartbeat, 'config_revision' | 'config_error' | 'sent_unix_ms'> {
    const m = this.model.manifest;
    const est = this.adapt.shadows.size ? this.adapt.shadows.estimate(this.thresholds) : undefined;
    const s = this.adapt.current;
    return {
      id: this.options.id,
      run: this.runId,
      model: m.name,
      model_version: m.version,
      operating_point: this.operatingPointName,
      thresholds: [...this.thresholds],
      controller: s.controller,
      binding: this.adapt.bindingNow,
      shadow_rate: s.shadowRate,
      frames: this.adapt.totals.frames,
      offload_rate: this.adapt.recentOffloadRate(),
      estimated_loss: est ? est.loss : null,
      agreement: est ? 1 - est.disagreement : null,
    };
  }

  /** Whether close() has been called. */
  get isClosed(): boolean {
    return this.state !== 'running';
  }

  /** Whether the agent's NATS connection is up now. */
  get connected(): boolean {
    return this.link?.connected ?? false;
  }

  /** Port of the /metrics endpoint (undefined when disabled). */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** Results not yet acknowledged by the results stream. */
  get resultsPending(): number {
    return this.publisher?.pending ?? 0;
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
    this.adapt.stop();
    await this.fleet?.close();
    await Promise.all(this.pending);
    if (this.publisher) {
      const flushed = await this.publisher.flush(this.options.flushTimeoutMs);
      if (!flushed) {
        const dir = this.options.outbox.dir ?? 'memory (lost)';
        this.log('results_kept_in_outbox', { results: this.publisher.pending, dir });
      }
      this.publisher.close();
    }
    await this.link?.close();
    await this.runner.close();
    await this.metricsServer?.close();
    this.state = 'closed';
  }
}

/** Accuracy the controller may give up when neither the options nor the operating point say. */
const DEFAULT_BUDGET = 0.005;

/**
 * The operating point (none for thresholds), its thresholds and the controller's budget, from the fleet settings `s`
 * over the command's options. Throws a ConfigError when the point is not the model's or the thresholds do not fit.
 */
function pointOf(m: Manifest, o: CompiledEdgeOptions, s: EdgeSettings = {}) {
  const custom = s.thresholds ?? (s.operating_point ? undefined : o.thresholds);
  const op = custom ? undefined : operatingPoint(m, s.operating_point ?? o.operatingPoint);
  const base = custom ?? op!.thresholds;
  if (base.length !== m.exits.length)
    throw new ConfigError(`thresholds: ${m.exits.length} needed (one per exit), got ${base.length}`);
  return { op, base, budget: s.accuracy_budget ?? o.accuracyBudget ?? op?.max_drop ?? DEFAULT_BUDGET };
}

/**
 * The offload rate the operating point promised on the test set, the centre of the alerting band; -1 for custom
 * thresholds, another split, or the controller on (the thresholds are then its own; its panel watches the rate).
 */
function promisedOffloadRate(m: Manifest, o: CompiledEdgeOptions, split: number, s: EdgeSettings): number {
  const { op } = pointOf(m, o, s);
  const controller = s.controller ?? o.controller;
  return op?.test && split === (m.default_split ?? 1) && !controller ? 1 - op.test.edge_exit_rate : -1;
}

/** The live settings of the adaptation, from the agent's options. */
export function adaptSettings(o: CompiledEdgeOptions, budget: number): AdaptSettings {
  return {
    shadowRate: o.shadowRate,
    controller: o.controller,
    latencyTargetMs: o.latencyTargetMs,
    bandwidthBytesPerS: o.bandwidthBytesPerS,
    step: o.controlStep,
    minRecords: o.minShadowRecords,
    budget,
  };
}
