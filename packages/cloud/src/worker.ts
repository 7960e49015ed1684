import {
  CascadeError,
  clip,
  configKey,
  ERROR_CODES,
  ErrorCode,
  FLEET,
  parseModelRollout,
  RESULTS_STREAM,
  subjects,
  v1,
  type InferReplyMessage,
} from '@cascade/proto';
import { loadModelDir, type ModelDir } from '@cascade/runtime';
import {
  ensureFleetBuckets,
  ensureResultsStream,
  KeyWatch,
  resolveModel,
  healthRoutes,
  NatsLink,
  serveMetrics,
  stderrLog,
  type Lifecycle,
  type Log,
  type MetricsServer,
} from '@cascade/service';
import type { ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JobReply } from './batcher.js';
import { WorkerMetrics } from './metrics.js';
import { RequestError } from './errors.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { peekRequestId, validateRequest } from './validate.js';
import { loadVersion, Versions, type Served } from './versions.js';

/** The worker's lifecycle: created, waiting (for NATS), running, draining, stopped. */
export type WorkerState = Lifecycle;

/** Counts kept by a worker, by reply status (`ok` or an error code). */
export type WorkerCounts = Record<string, number>;

/** Longest error message a reply carries. */
const MAX_ERROR_MESSAGE = 300;

/**
 * A cloud worker: NATS service endpoints on cascade.v1.infer.<model>.<version> (and the unversioned subject of older
 * clients) in a queue group, for each version of its model it serves. `create()` loads the model and connects;
 * `run()` serves until `shutdown()` (or SIGTERM in the CLI), then drains: it stops taking requests, answers everything
 * queued, and resolves. While it runs it follows the model's rollout (`models.<name>` in the fleet's settings bucket):
 * it adds the versions the rollout lists (from the model registry) and drops the others, finishing their requests.
 */
export class CloudWorker {
  state: WorkerState = 'created';
  readonly counts: WorkerCounts = {};
  /** The model versions served, following the rollout. */
  private readonly versions: Versions;
  private stopped!: Promise<void>;
  private resolveStopped!: () => void;
  private shuttingDown: Promise<void> | undefined;
  private metricsServer: MetricsServer | undefined;
  private failure: Error | undefined;
  private rollout: KeyWatch | undefined;

  private constructor(
    readonly options: CompiledWorkerOptions,
    first: Served,
    private readonly link: NatsLink,
    private readonly log: Log,
    readonly metrics: WorkerMetrics,
  ) {
    const nc = () => this.link.nc!;
    const running = () => this.state === 'running';
    this.versions = new Versions(first, options, metrics, log, nc, running, (msg, s, legacy) => this.handle(msg, s, legacy)); // prettier-ignore
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  static async create(options: WorkerOptions, log: Log = stderrLog): Promise<CloudWorker> {
    const o = compileWorkerOptions(options);
    const dir = await resolveModel(o.model, { servers: o.nats, auth: o.natsAuth, ...(o.modelCache ? { cache: o.modelCache } : {}), log }); // prettier-ignore
    const model = await loadModelDir(dir);
    const m = model.manifest;
    // eslint-disable-next-line prefer-const -- assigned below, after the metrics that read it at scrape time
    let worker: CloudWorker | undefined;
    const metrics = new WorkerMetrics(
      { worker: o.id, model: m.name, modelVersion: m.version, ep: o.executionProvider },
      () => worker?.queueDepth ?? 0,
      () => link?.nc,
      () => link?.connected ?? false,
    );
    const first = await loadVersion(model, o, metrics, log);
    // NATS may come up after the worker (compose, Kubernetes): it is reached in the background, with backoff, and
    // run() serves once it is there; meanwhile /healthz says alive and /readyz 503.
    const link = await NatsLink.open({
      servers: o.nats,
      via: o.natsVia,
      name: `cascade-cloud ${o.id}`,
      auth: o.natsAuth,
      log,
      firstConnect: 'wait',
    });
    worker = new CloudWorker(o, first, link, log, metrics);
    // Closed for good (not by shutdown): stop, so that the CLI exits non-zero and an orchestrator restarts it.
    void link.lost.then((err) => worker.fail(err));
    return worker;
  }

  /** The connection: only once run() has reached NATS. */
  private get nc(): NatsConnection {
    return this.link.nc!;
  }

  /** The model version served first (the oldest still served). */
  get model(): ModelDir {
    return this.versions.first.model;
  }

  /** The model versions served now, oldest first (not those being dropped). */
  get servedVersions(): string[] {
    return this.versions.served;
  }

  /** Why the worker stopped on its own (its NATS connection was lost for good), if it did. */
  get failed(): Error | undefined {
    return this.failure;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    void this.shutdown();
  }

  /** Port of the /metrics endpoint once running (undefined when disabled). */
  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** Regular requests waiting, over every version. */
  get queueDepth(): number {
    return this.versions.queueDepth;
  }

  /**
   * Starts serving once NATS is reached (the metrics and health endpoints answer before: /readyz 503 while waiting);
   * resolves when the worker has drained and stopped.
   */
  async run(): Promise<void> {
    if (this.state !== 'created') throw new CascadeError(ERROR_CODES.STATE, `run() called in state ${this.state}`);
    const m = this.model.manifest;
    if (this.options.metricsPort >= 0) {
      this.metricsServer = await serveMetrics(
        this.metrics.registry,
        this.options.metricsPort,
        this.options.metricsHost,
        healthRoutes({
          alive: () =>
            this.failure || this.link.nc?.isClosed() ? (this.failure?.message ?? 'NATS closed') : undefined,
          ready: () => {
            if (this.state === 'running') return this.link.connected ? undefined : 'NATS disconnected';
            return this.state === 'waiting' ? 'waiting for NATS' : this.state;
          },
        }),
      );
    }
    if (!this.link.connected) {
      this.state = 'waiting';
      this.log('worker_waiting_for_nats', { nats: this.options.nats, metrics_port: this.metricsServer?.port ?? null });
      const reached = await this.link.connection().then(
        () => true,
        () => false, // shut down before NATS came
      );
      if (!reached || this.shuttingDown) {
        await this.shutdown();
        return this.stopped;
      }
    }
    await this.versions.serve(this.versions.first);
    // The cloud side owns the results stream: create it when missing, so that edges' results have somewhere to go.
    const replicas = this.options.resultsReplicas;
    const limits = this.options.resultsLimits;
    ensureResultsStream(this.nc, {
      ...(replicas === undefined ? {} : { replicas }),
      ...(limits ? { limits } : {}),
    }).then(
      (stream) => {
        if (stream.created)
          this.log('results_stream_created', {
            stream: RESULTS_STREAM.name,
            replicas: stream.replicas,
            limits: stream.limits,
          });
        if (stream.updated.length > 0)
          this.log('results_stream_updated', { stream: RESULTS_STREAM.name, changed: stream.updated });
        if (replicas !== undefined && stream.replicas !== replicas)
          this.log('results_stream_replicas_differ', {
            stream: RESULTS_STREAM.name,
            replicas: stream.replicas,
            wanted: replicas,
            hint: 'an existing stream is left as it is: change its replicas with a JetStream client while every node is up',
          });
      },
      (err: Error) => this.log('results_stream_unchecked', { error: clip(err.message, 200) }),
    );
    // And the fleet's buckets (edges' settings and registry), so that edges and operators find them.
    ensureFleetBuckets(this.nc, replicas ?? 1).then(
      ({ created }) => created.length > 0 && this.log('fleet_buckets_created', { buckets: created }),
      (err: Error) => this.log('fleet_buckets_unchecked', { error: clip(err.message, 200) }),
    );
    this.state = 'running';
    this.log('worker_started', {
      id: this.options.id,
      ep: this.options.executionProvider,
      model: m.name,
      version: m.version,
      subjects: [subjects.infer(m.name, m.version), subjects.infer(m.name)],
      metrics_port: this.metricsServer?.port ?? null,
    });
    if (this.options.rollout) {
      const key = configKey.model(m.name);
      this.rollout = new KeyWatch(this.link, FLEET.configBucket, [key], (e) => {
        if (e.operation !== 'PUT') return; // a deleted rollout leaves the worker serving what it serves
        let wanted: string[];
        try {
          wanted = parseModelRollout(e.string(), e.key).workers;
        } catch (err) {
          this.log('model_rollout_refused', { key, revision: e.revision, error: clip((err as Error).message, 300) });
          return;
        }
        this.versions.follow(wanted);
      }, this.log, 'model_rollout'); // prettier-ignore
      this.rollout.start();
    }
    await this.stopped;
  }

  /**
   * Answers one request that came to version `s`'s endpoints: on its own subject it is for `s`; on the unversioned
   * one it goes to the version it names, if served.
   */
  private handle(msg: ServiceMsg, s: Served, legacy: boolean): void {
    const enqueuedAt = performance.now();
    let replied = false;
    let answering: Served | undefined;
    const reply = (o: JobReply, requestId: string, shadow = false) => {
      if (replied) return;
      replied = true;
      const status = o.kind === 'prediction' ? 'ok' : o.code;
      let sent: boolean;
      try {
        const classes = (answering ?? s).model.manifest.classes;
        sent = msg.respond(v1.InferReply.encode(toReply(o, requestId, this.options.id, classes)).finish());
      } catch (err) {
        sent = false;
        this.log('reply_failed', { status, error: clip((err as Error).message, 200) });
      }
      if (!sent) {
        this.counts.unsent = (this.counts.unsent ?? 0) + 1;
        this.metrics.repliesFailed.inc({ status });
        return;
      }
      if (shadow) {
        this.counts[`shadow_${status}`] = (this.counts[`shadow_${status}`] ?? 0) + 1;
        this.metrics.shadowRequests.inc({ status });
        return;
      }
      this.counts[status] = (this.counts[status] ?? 0) + 1;
      this.metrics.requests.inc({ status, model_version: answering?.model.manifest.version ?? '' });
      this.metrics.requestSeconds.observe((performance.now() - enqueuedAt) / 1000);
    };
    // Refusals that need no decoding come first, so a flood is shed at the cost of reading one field.
    if (this.state !== 'running') {
      reply({ kind: 'error', code: ErrorCode.DRAINING, message: 'worker is shutting down' }, peekRequestId(msg.data));
      return;
    }
    if (s.batcher.depth >= this.options.queueLimit) {
      reply(
        { kind: 'error', code: ErrorCode.OVERLOADED, message: `queue full (${this.options.queueLimit})` },
        peekRequestId(msg.data),
      );
      return;
    }
    try {
      const serves = legacy
        ? [...this.versions.map.values()].filter((v) => !v.draining || v === s).map((v) => v.model.manifest)
        : s.model.manifest;
      const req = validateRequest(msg.data, serves, this.options.maxRequestBytes);
      answering = this.versions.map.get(req.modelVersion)!;
      answering.batcher.submit({ req, enqueuedAt, reply: (o) => reply(o, req.requestId, req.shadow) });
    } catch (err) {
      const e = err instanceof RequestError ? err : new RequestError(ErrorCode.INTERNAL, (err as Error).message);
      if (e.code === ErrorCode.INTERNAL) this.log('request_failed', { error: e.message });
      reply({ kind: 'error', code: e.code, message: e.message }, peekRequestId(msg.data));
    }
  }

  /** Stops taking work, answers what is queued, closes NATS and the stage runner. Idempotent. */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.rollout?.close();
      if (this.state === 'running') {
        this.state = 'draining';
        this.log('worker_draining', { queued: this.queueDepth });
        await this.versions.drain();
      }
      await this.link.close();
      await this.versions.close();
      await this.metricsServer?.close();
      this.state = 'stopped';
      this.log('worker_stopped', { counts: this.counts, ...(this.failure ? { error: this.failure.message } : {}) });
      this.resolveStopped();
    })();
    return this.shuttingDown;
  }
}

function toReply(o: JobReply, requestId: string, workerId: string, classes: string[]): InferReplyMessage {
  if (o.kind === 'error') {
    return { requestId, workerId, error: { code: v1.ErrorCode[o.code], message: clip(o.message, MAX_ERROR_MESSAGE) } };
  }
  return {
    requestId,
    workerId,
    prediction: {
      classIndex: o.classIndex,
      className: classes[o.classIndex] ?? '',
      confidence: o.confidence,
      exit: o.exit,
      probabilities: o.probabilities ?? [],
      exits: (o.exits ?? []).map((v) => ({
        exit: v.exit,
        classIndex: v.classIndex,
        confidence: v.confidence,
        probabilities: v.probabilities ?? [],
      })),
      timings: { queueMs: o.queueMs, computeMs: o.computeMs, batchSize: o.batchSize },
    },
  };
}
