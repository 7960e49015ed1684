import { CascadeError, ConfigError, ERROR_CODES, type EdgeHeartbeat, type EdgeSettings } from '@cascade/proto';
import {
  createExecutor,
  loadModelDir,
  operatingPoint,
  type Manifest,
  type ModelDir,
  type OperatingPoint,
  type StageExecutor,
} from '@cascade/runtime';
import {
  defaultModelCache,
  fetchModel,
  NatsLink,
  resolveModel,
  serveMetrics,
  stderrLog,
  type Log,
  type MetricsServer,
} from '@cascade/service';
import { randomBytes } from 'node:crypto';
import { FramePath, type EdgeResult, type FrameContext } from './frame.js';
import { liveRoutes } from './live.js';
import { Adaptation, type AdaptSettings } from './adapt.js';
import { FleetClient } from './fleet.js';
import { EdgeMetrics } from './metrics.js';
import { Offloader, type ExitView } from './offload.js';
import { compileEdgeOptions, type CompiledEdgeOptions, type EdgeOptions } from './options.js';
import { Outbox } from './outbox.js';
import { toFrameResult } from './delivery.js';
import { ResultsPublisher } from './results.js';
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
  /** The fleet configuration and registry (with NATS). */
  fleet: FleetClient | undefined;
  /** Model versions a switch replaced, closing once their frames have finished. */
  private readonly retiring = new Set<Promise<void>>();

  private constructor(
    readonly options: CompiledEdgeOptions,
    /** The model version the agent runs; replaced between frames by switchModel(). */
    private current: EdgeModel,
    private readonly link: NatsLink | undefined,
    private readonly publisher: ResultsPublisher | undefined,
    private readonly log: Log,
    readonly metrics: EdgeMetrics,
  ) {}

  get model(): ModelDir {
    return this.current.model;
  }

  get split(): number {
    return this.current.split;
  }

  /** The thresholds in force (the controller moves them in place). */
  get thresholds(): number[] {
    return this.current.thresholds;
  }

  /** Shadow sampling, the accuracy estimate and the threshold controller of the running model. */
  get adapt(): Adaptation {
    return this.current.adapt;
  }

  /** The operating point in force ('custom' for thresholds). */
  get operatingPointName(): string {
    return this.current.operatingPointName;
  }

  get modelName(): string {
    return this.current.model.manifest.name;
  }

  get modelVersion(): string {
    return this.current.model.manifest.version;
  }

  static async create(options: EdgeOptions, log: Log = stderrLog): Promise<EdgeAgent> {
    const o = compileEdgeOptions(options);
    const dir = await resolveModel(o.model, { ...(o.nats ? { servers: o.nats } : {}), auth: o.natsAuth, ...(o.modelCache ? { cache: o.modelCache } : {}), log }); // prettier-ignore
    const model = await loadModelDir(dir);
    const m = model.manifest;
    const metrics = new EdgeMetrics({ edge: o.id, model: m.name, modelVersion: m.version, backend: o.backend });
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
      const outbox = Outbox.open(
        { ...o.outbox },
        (reason, n) => {
          metrics.resultsDropped.inc({ reason }, n);
          log('results_dropped', {
            reason,
            count: n,
            limits: { max_bytes: o.outbox.maxBytes, max_age_ms: o.outbox.maxAgeMs },
          });
        },
        (level, use) =>
          log(level > 0 ? 'outbox_filling' : 'outbox_below_limits', {
            share_of_limit: level,
            results: use.count,
            bytes: use.bytes,
            oldest_age_s: Math.round(use.oldestAgeMs / 1000),
            limits: { max_bytes: use.maxBytes, max_age_ms: use.maxAgeMs },
            ...(level > 0 ? { then: 'the oldest results are dropped past a limit' } : {}),
          }),
      );
      metrics.probe.outbox = () => outbox.use();
      if (outbox.size > 0) log('outbox_recovered', { results: outbox.size, dir: o.outbox.dir });
      publisher = new ResultsPublisher(outbox, link, log, (n) => metrics.resultsPublished.inc(n));
      metrics.probe.pending = () => publisher!.pending;
    }
    let current: EdgeModel;
    try {
      current = await EdgeModel.load(model, o, {}, metrics, log, link);
    } catch (err) {
      publisher?.close();
      await link?.close();
      throw err;
    }
    const agent = new EdgeAgent(o, current, link, publisher, log, metrics);
    current.start();
    if (link && o.fleet) {
      agent.fleet = new FleetClient(link, o.id, agent, {
        applied: () => metrics.configUpdates.inc({ result: 'applied' }),
        refused: () => metrics.configUpdates.inc({ result: 'refused' }),
        model: (result) => metrics.modelSwitches.inc({ result }),
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
      id: o.id, run: agent.runId, model: m.name, version: m.version, split: current.split, mode: o.mode, encoding: o.encoding,
      backend: o.backend, nats: o.nats ?? null, outbox: o.outbox.dir ?? 'memory', metrics_port: agent.metricsServer?.port ?? null,
      inference_thread: current.thread, ...(current.medianMs !== undefined ? { edge_stages_ms: Math.round(current.medianMs * 1000) / 1000 } : {}),
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
    const emit = (cur: EdgeModel, ctx: FrameContext, r: EdgeResult) => {
      cur.path.observe(r);
      cur.adapt.observe(r);
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
      // The model version at the frame's start finishes it, even when another one takes over meanwhile.
      const cur = this.current;
      cur.active++;
      const job = cur.path.local(frame).then(
        async (out) => {
          cur.adapt.frame(out.views);
          const sampled = cur.adapt.sample();
          if ('exited' in out) {
            emit(cur, ctx, cur.path.result(ctx, out.exited, 'edge', 'exited'));
            if (sampled) cur.adapt.shadow(frame.pixels);
            return;
          }
          await this.acquireSlot();
          const record = (exits: ExitView[]) => cur.adapt.record(out.views, exits);
          cur.active++;
          const offload = cur.path
            .offload(ctx, out.best, out.state, setReachable, sampled, record, cur.adapt.modes)
            .then(
              (r) => emit(cur, ctx, r),
              (err: Error) => emit(cur, ctx, cur.path.errorResult(ctx, err)),
            )
            .finally(() => {
              this.releaseSlot();
              this.pending.delete(offload);
              cur.done();
            });
          this.pending.add(offload);
        },
        (err: Error) => emit(cur, ctx, cur.path.errorResult(ctx, err)),
      );
      local.add(job);
      void job.finally(() => {
        local.delete(job);
        cur.done();
      });
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
    this.current.apply(s);
  }

  /**
   * Loads `version` of the running model (from the registry, or its cache), with `settings` applied, starts its
   * stages, and makes it the model of the frames that start from then on; frames under way finish on the version
   * they started with, whose stages close after them. Throws (the agent keeps its version) when the version cannot
   * be fetched, fails its checksums, or does not fit the settings or options.
   */
  async switchModel(version: string, settings: EdgeSettings = {}): Promise<void> {
    if (this.state !== 'running') throw new CascadeError(ERROR_CODES.STATE, `switchModel() on an edge agent that is ${this.state}`); // prettier-ignore
    const o = this.options;
    const name = this.modelName;
    const { dir } = await fetchModel(this.link?.nc, name, version, o.modelCache ?? defaultModelCache());
    const model = await loadModelDir(dir);
    if (model.manifest.name !== name) throw new ConfigError(`${dir} holds ${model.manifest.name}, not ${name}`);
    const next = await EdgeModel.load(model, o, settings, this.metrics, this.log, this.link);
    if (this.state !== 'running') {
      await next.close();
      throw new CascadeError(ERROR_CODES.STATE, 'the edge agent closed during the switch');
    }
    const old = this.current;
    this.current = next;
    old.adapt.stop();
    this.metrics.setModel(name, version);
    next.start();
    const retired = old.drained().then(() => old.close());
    this.retiring.add(retired);
    void retired.finally(() => this.retiring.delete(retired));
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
    await this.fleet?.close(); // and a model switch under way
    this.adapt.stop();
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
    await Promise.all(this.retiring);
    await this.current.close();
    await this.metricsServer?.close();
    this.state = 'closed';
  }
}

/**
 * One model version as an edge runs it: its edge stages (in their own inference thread), the operating point, the
 * path of a frame and the adaptation. The agent replaces it between frames to switch versions.
 */
class EdgeModel {
  readonly path: FramePath;
  readonly adapt: Adaptation;
  operatingPointName: string;
  /** Frames (and their offloads) under way on this version. */
  active = 0;
  private drainWaiters: (() => void)[] = [];

  /** The thresholds in force: the frame path, the offloader and the controller share this array. */
  readonly thresholds: number[];

  private constructor(
    readonly model: ModelDir,
    readonly split: number,
    private readonly runner: StageExecutor,
    readonly thread: 'inline' | 'worker',
    readonly medianMs: number | undefined,
    private readonly o: CompiledEdgeOptions,
    point: FleetPoint,
    private readonly metrics: EdgeMetrics,
    log: Log,
    link: NatsLink | undefined,
  ) {
    const m = model.manifest;
    const thresholds = [...point.base]; // the controller moves these, in place
    this.thresholds = thresholds;
    const offloader = new Offloader(m, split, thresholds, o, link);
    this.path = new FramePath(o.id, model, split, thresholds, runner, offloader, metrics, log);
    const sendShadow = link
      ? (pixels: Uint8Array) => {
          const { request, bytes } = offloader.build(pixels, {}, { shadow: true });
          return offloader.send(request, bytes, o.shadowTimeoutMs);
        }
      : undefined;
    const edgeExits = m.stages.slice(0, split).reduce((n, s) => n + s.exits.length, 0);
    this.adapt = new Adaptation(m, edgeExits, thresholds, point.base, point.settings, o.shadowWindow, metrics, log, sendShadow); // prettier-ignore
    if (o.mode === 'auto') {
      const cloud = (first: number) => m.stages.slice(first).reduce((n, s) => n + s.macs, 0);
      this.adapt.chooseModes({ state: cloud(split), image: cloud(0) }, { bytesPerKB: o.bytesWeight, perMMAC: o.computeWeight }); // prettier-ignore
    }
    this.operatingPointName = point.op?.name ?? 'custom';
    metrics.expectedOffloadRate.set(promisedOffloadRate(m, point.op, split, point.settings.controller));
  }

  /** Starts the model's edge stages and checks the options and `settings` against it. */
  static async load(
    model: ModelDir,
    o: CompiledEdgeOptions,
    settings: EdgeSettings,
    metrics: EdgeMetrics,
    log: Log,
    link: NatsLink | undefined,
  ): Promise<EdgeModel> {
    const m = model.manifest;
    const split = o.split ?? m.default_split ?? 1;
    if (split > m.stages.length) throw new ConfigError(`split ${split}: the model has ${m.stages.length} stages`);
    const point = fleetPoint(m, o, settings); // settings that do not fit the model fail here, before the stages start
    const { executor, thread, medianMs } = await createExecutor(model, {
      last: split - 1,
      threads: o.threads,
      backend: o.backend,
      thread: o.inferenceThread,
      probe: () => ({
        image: { data: new Uint8Array(m.input.shape.reduce((a, b) => a * b, 1)), dims: [1, ...m.input.shape] },
      }),
    });
    try {
      return new EdgeModel(model, split, executor, thread, medianMs, o, point, metrics, log, link);
    } catch (err) {
      await executor.close();
      throw err;
    }
  }

  /** Applies fleet settings over the options; throws a ConfigError, changing nothing, when they do not fit. */
  apply(s: EdgeSettings): void {
    const m = this.model.manifest;
    const { op, base, settings } = fleetPoint(m, this.o, s);
    this.adapt.apply(settings, base);
    this.operatingPointName = op?.name ?? 'custom';
    this.metrics.expectedOffloadRate.set(promisedOffloadRate(m, op, this.split, settings.controller));
  }

  start(): void {
    this.adapt.start(this.o.controlIntervalMs);
  }

  /** A frame (or its offload) finished. */
  done(): void {
    if (--this.active === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Resolves once no frame is under way on this version. */
  drained(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.adapt.stop();
    await this.runner.close();
  }
}

/** What fleet settings over the command's options make of a model: its operating point, thresholds, adaptation. */
interface FleetPoint {
  /** None for custom thresholds. */
  op: OperatingPoint | undefined;
  base: number[];
  settings: AdaptSettings;
}

/** Accuracy the controller may give up when neither the options nor the operating point say. */
const DEFAULT_BUDGET = 0.005;

/**
 * The operating point (none for thresholds), its thresholds and the adaptation's settings (the controller's budget
 * included), from the fleet settings `s` over the command's options. Throws a ConfigError when the point is not the
 * model's or the thresholds do not fit.
 */
function fleetPoint(m: Manifest, o: CompiledEdgeOptions, s: EdgeSettings): FleetPoint {
  const custom = s.thresholds ?? (s.operating_point ? undefined : o.thresholds);
  const op = custom ? undefined : operatingPoint(m, s.operating_point ?? o.operatingPoint);
  const base = custom ?? op!.thresholds;
  if (base.length !== m.exits.length)
    throw new ConfigError(`thresholds: ${m.exits.length} needed (one per exit), got ${base.length}`);
  const settings = adaptSettings(o, s.accuracy_budget ?? o.accuracyBudget ?? op?.max_drop ?? DEFAULT_BUDGET);
  if (s.shadow_rate !== undefined) settings.shadowRate = s.shadow_rate;
  if (s.controller !== undefined) settings.controller = s.controller;
  if (s.latency_target_ms !== undefined) settings.latencyTargetMs = s.latency_target_ms;
  if (s.bandwidth_bytes_per_s !== undefined) settings.bandwidthBytesPerS = s.bandwidth_bytes_per_s;
  return { op, base, settings };
}

/**
 * The offload rate the operating point promised on the test set, the centre of the alerting band; -1 for custom
 * thresholds, another split, or the controller on (the thresholds are then its own; its panel watches the rate).
 */
function promisedOffloadRate(m: Manifest, op: OperatingPoint | undefined, split: number, controller: boolean): number {
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
