import { CascadeError, ConfigError, ERROR_CODES, type EdgeHeartbeat, type EdgeSettings } from '@cascade/proto';
import { loadModelDir, type ModelDir } from '@cascade/runtime';
import {
  defaultModelCache,
  fetchModel,
  healthRoutes,
  NatsLink,
  resolveModel,
  serveMetrics,
  stderrLog,
  type Lifecycle,
  type Log,
  type MetricsServer,
} from '@cascade/service';
import { randomBytes } from 'node:crypto';
import type { Adaptation } from './adapt.js';
import { toFrameResult } from './delivery.js';
import { FleetClient } from './fleet.js';
import { liveRoutes } from './live.js';
import { EdgeMetrics } from './metrics.js';
import { EdgeModel, type EdgeEnv, type ExecutorPool } from './model.js';
import { compileEdgeOptions, type CompiledEdgeOptions, type EdgeOptions } from './options.js';
import { Outbox } from './outbox.js';
import type { EdgeResult, Frame } from './path.js';
import { ResultsPublisher } from './results.js';
import { Slots } from './slots.js';

export type { EdgeResult, Outcome } from './path.js';

/**
 * What an agent may share with the other agents of its process (one per camera, CameraHost): the NATS connection
 * (the agent then neither opens nor closes one), the stage sessions, and the process's metrics (reported once).
 */
export interface SharedEdge {
  link?: NatsLink;
  executors?: ExecutorPool;
  processMetrics?: boolean;
}

/** `running` until close(); `closing` while it finishes offloads and flushes results; then `closed`. */
export type EdgeState = Extract<Lifecycle, 'running' | 'draining' | 'stopped'>;

/**
 * An edge agent: runs stages 0..split-1 in a worker thread, ends a frame at the first confident exit, and offloads
 * the rest over NATS with a deadline; any failure of the offload answers with the best local exit (a fallback).
 * It starts without NATS and connects when it can; every result also goes to the results stream through an outbox.
 * What happens to one frame is in path.ts, a model version in model.ts; this file is the lifecycle and admission.
 */
export class EdgeAgent {
  state: EdgeState = 'running';
  /** Names this start of the agent in result ids (`<edge>/<run>/<sequence>`). */
  readonly runId = randomBytes(6).toString('hex');
  private sequence = 0;
  /** Offload slots: a hard frame waits for one (the source then waits too). */
  private readonly slots: Slots;
  /** Frames under way, until their result is emitted. */
  private readonly pending = new Set<Promise<void>>();
  private metricsServer: MetricsServer | undefined;
  private shuttingDown: Promise<void> | undefined;
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
    private readonly env: EdgeEnv,
    /** Whether the NATS connection is this agent's own, to close (not a shared one). */
    private readonly ownsLink: boolean,
  ) {
    this.slots = new Slots(options.maxInflight);
  }

  get model(): ModelDir {
    return this.current.model;
  }

  get split(): number {
    return this.current.split;
  }

  /** The thresholds in force (the adaptation's policy: the controller moves them between frames). */
  get thresholds(): readonly number[] {
    return this.current.adapt.thresholds;
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

  static async create(options: EdgeOptions, log: Log = stderrLog, shared: SharedEdge = {}): Promise<EdgeAgent> {
    const o = compileEdgeOptions(options);
    const dir = await resolveModel(o.model, { ...(o.nats ? { servers: o.nats } : {}), auth: o.natsAuth, ...(o.modelCache ? { cache: o.modelCache } : {}), log }); // prettier-ignore
    const model = await loadModelDir(dir);
    const m = model.manifest;
    const metrics = new EdgeMetrics({ edge: o.id, model: m.name, modelVersion: m.version, backend: o.backend }, shared.processMetrics ?? true); // prettier-ignore
    let link: NatsLink | undefined = shared.link;
    let publisher: ResultsPublisher | undefined;
    if (o.nats && !link) {
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
    }
    if (link) {
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
    let reachable = 0; // 1 after a reply from a worker, 0 after a timeout, no responders or a disconnection
    const env: EdgeEnv = { o, metrics, log, link, reachable: (up) => (reachable = up ? 1 : 0), ...(shared.executors ? { executors: shared.executors } : {}) }; // prettier-ignore
    const ownsLink = link !== undefined && link !== shared.link;
    let current: EdgeModel;
    try {
      current = await EdgeModel.load(model, {}, env);
    } catch (err) {
      publisher?.close();
      if (ownsLink) await link?.close();
      throw err;
    }
    const agent = new EdgeAgent(o, current, link, publisher, log, metrics, env, ownsLink);
    current.start();
    if (link && o.fleet) {
      agent.fleet = new FleetClient(link, o.id, agent, {
        applied: () => metrics.configUpdates.inc({ result: 'applied' }),
        refused: () => metrics.configUpdates.inc({ result: 'refused' }),
        model: (result) => metrics.modelSwitches.inc({ result }),
      }, log); // prettier-ignore
      agent.fleet.start();
    }
    metrics.probe.reachable = () => (link?.connected ? reachable : 0);
    if (o.metricsPort >= 0) {
      try {
        agent.metricsServer = await serveMetrics(metrics.registry, o.metricsPort, o.metricsHost, {
          ...liveRoutes(metrics.registry, o.id),
          ...healthRoutes({
            alive: () => undefined,
            ready: () => {
              if (agent.state === 'running' && (!link || link.connected)) return undefined;
              return link?.connected === false ? 'NATS disconnected' : agent.state;
            },
          }),
        });
      } catch (err) {
        await agent.shutdown();
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
    /** Frames in their edge stages (or waiting for an offload slot). */
    const local = new Set<Promise<void>>();
    for await (const frame of frames) {
      count++;
      // The model version at the frame's start finishes it, even when another one takes over meanwhile.
      const cur = this.current;
      cur.active++;
      let leave!: () => void;
      const left = new Promise<void>((resolve) => (leave = resolve));
      const admit = async () => {
        const release = await this.slots.acquire();
        this.metrics.inflight.inc();
        leave();
        return () => {
          this.metrics.inflight.dec();
          release();
        };
      };
      const done = cur.path
        .process(frame, ++this.sequence, admit)
        .then((r) => this.emit(r, frame, onResult))
        .finally(() => {
          leave();
          this.pending.delete(done);
          cur.done();
        });
      this.pending.add(done);
      local.add(left);
      void left.then(() => local.delete(left));
      if (local.size >= this.options.pipeline) await Promise.race(local);
    }
    await Promise.all(this.pending);
    return count;
  }

  /** A frame's result to the caller and, through the outbox, to the results stream. */
  private emit(r: EdgeResult, frame: Frame, onResult: (r: EdgeResult) => void): void {
    onResult(r);
    if (this.publisher) {
      const { id, subject, data } = toFrameResult(r, this.runId, frame.capturedUnixMs);
      this.publisher.publish(id, subject, data);
    }
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
    const next = await EdgeModel.load(model, settings, this.env);
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

  /**
   * Finishes offloads in flight, waits up to `flushTimeoutMs` for the results stream to acknowledge every result
   * (what is left stays in the outbox for the next start), then closes NATS and the stage runner. Idempotent.
   */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.state = 'draining';
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
      if (this.ownsLink) await this.link?.close();
      await Promise.all(this.retiring);
      await this.current.close();
      await this.metricsServer?.close();
      this.state = 'stopped';
    })();
    return this.shuttingDown;
  }
}
