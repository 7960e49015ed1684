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
import { checkAgainstCpu, loadModelDir, StageRunner, warmUp, type ModelDir, type ParityReport } from '@cascade/runtime';
import {
  defaultModelCache,
  ensureFleetBuckets,
  fetchModel,
  KeyWatch,
  resolveModel,
  Serial,
  ensureResultsStream,
  NatsLink,
  serveMetrics,
  stderrLog,
  type Log,
  type MetricsServer,
} from '@cascade/service';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { Batcher, type JobReply } from './batcher.js';
import { WorkerMetrics } from './metrics.js';
import { RequestError } from './errors.js';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { peekRequestId, validateRequest } from './validate.js';

export type WorkerState = 'created' | 'waiting' | 'running' | 'draining' | 'stopped';

/** Counts kept by a worker, by reply status (`ok` or an error code). */
export type WorkerCounts = Record<string, number>;

/** Longest error message a reply carries. */
const MAX_ERROR_MESSAGE = 300;

/** One model version a worker serves: its stages, its batcher, and a service instance with its endpoints. */
interface Served {
  model: ModelDir;
  runner: StageRunner;
  batcher: Batcher;
  service?: Service;
  /** Dropped by a rollout: takes no new requests, finishes what it has. */
  draining: boolean;
}

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
  /** The versions loaded, in the order they were added. */
  private readonly versions = new Map<string, Served>();
  private stopped!: Promise<void>;
  private resolveStopped!: () => void;
  private shuttingDown: Promise<void> | undefined;
  private metricsServer: MetricsServer | undefined;
  private failure: Error | undefined;
  private rollout: KeyWatch | undefined;
  /** The versions the rollout asks for (undefined: no rollout), and the reconciliation with them. */
  private wanted: string[] | undefined;
  private readonly reconciler = new Serial(() => this.reconcile());
  /** Versions that failed to load, not tried again until the rollout changes. */
  private refused = new Map<string, string>();
  /** Versions being dropped, until their requests are answered and their stages closed. */
  private readonly drops = new Map<string, Promise<void>>();

  private constructor(
    readonly options: CompiledWorkerOptions,
    first: Served,
    private readonly link: NatsLink,
    private readonly log: Log,
    readonly metrics: WorkerMetrics,
  ) {
    this.versions.set(first.model.manifest.version, first);
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
    return [...this.versions.values()][0]!.model;
  }

  /** The model versions served now, oldest first (not those being dropped). */
  get servedVersions(): string[] {
    return [...this.versions].filter(([, s]) => !s.draining).map(([v]) => v);
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
    let n = 0;
    for (const s of this.versions.values()) n += s.batcher.depth;
    return n;
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
        {
          '/healthz': async () => {
            const ok = !this.failure && !(this.link.nc?.isClosed() ?? false);
            return {
              status: ok ? 200 : 503,
              type: 'text/plain',
              body: ok ? 'ok\n' : `failed: ${this.failure?.message ?? 'NATS closed'}\n`,
            };
          },
          '/readyz': async () => {
            const ready = this.state === 'running' && this.link.connected;
            const why =
              this.state === 'waiting'
                ? 'waiting for NATS'
                : this.state !== 'running'
                  ? this.state
                  : 'NATS disconnected';
            return { status: ready ? 200 : 503, type: 'text/plain', body: ready ? 'ready\n' : `not ready: ${why}\n` };
          },
        },
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
    await this.serve(this.versions.get(m.version)!);
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
        try {
          this.wanted = parseModelRollout(e.string(), e.key).workers;
        } catch (err) {
          this.log('model_rollout_refused', { key, revision: e.revision, error: clip((err as Error).message, 300) });
          return;
        }
        this.refused.clear();
        this.reconciler.kick();
      }, this.log, 'model_rollout'); // prettier-ignore
      this.rollout.start();
    }
    await this.stopped;
  }

  /** Starts a version's service instance: its own subject and the unversioned one, in the queue group. */
  private async serve(s: Served): Promise<void> {
    const m = s.model.manifest;
    s.service = await new Svcm(this.nc).add({
      name: 'cascade-worker',
      version: '0.1.0',
      description: `finishes ${m.name}@${m.version} frames from stage 1 on`,
      metadata: {
        model: m.name,
        model_version: m.version,
        worker: this.options.id,
        ep: this.options.executionProvider,
      },
      queue: this.options.queue,
    });
    const handler = (legacy: boolean) => (err: Error | null, msg: ServiceMsg) => {
      if (err) this.log('endpoint_error', { error: err.message });
      else this.handle(msg, s, legacy);
    };
    s.service.addEndpoint('infer', { subject: subjects.infer(m.name, m.version), handler: handler(false) });
    s.service.addEndpoint('infer-unversioned', { subject: subjects.infer(m.name), handler: handler(true) });
    await this.nc.flush(); // the server has the subscriptions before the version counts as served
  }

  /**
   * Brings the versions served to what the rollout wants: first adds the missing ones (fetched from the registry,
   * checked, warmed up, served), then drops the others, but never the last version that serves: a rollout none of
   * whose versions loads leaves the worker as it was.
   */
  private async reconcile(): Promise<void> {
    const wanted = this.wanted;
    if (!wanted) return;
    for (const version of wanted) {
      await this.drops.get(version); // wanted again while being dropped: added again once it is gone
      if (this.state !== 'running' || this.versions.has(version) || this.refused.has(version)) continue;
      await this.add(version);
    }
    if (this.state !== 'running') return;
    const serving = this.servedVersions;
    if (!wanted.some((v) => serving.includes(v))) {
      this.log('model_rollout_unserved', { wanted, serving, hint: 'none of the versions wanted loaded: the worker keeps serving what it serves' }); // prettier-ignore
      return;
    }
    for (const version of serving) if (!wanted.includes(version)) this.drop(version);
  }

  private async add(version: string): Promise<void> {
    const name = this.model.manifest.name;
    const o = this.options;
    if (this.servedVersions.length >= o.maxVersions) {
      this.refuse(version, `the worker serves ${o.maxVersions} versions already (--max-versions)`);
      return;
    }
    const started = performance.now();
    let s: Served | undefined;
    try {
      const { dir, from } = await fetchModel(this.nc, name, version, o.modelCache ?? defaultModelCache());
      const model = await loadModelDir(dir);
      if (model.manifest.name !== name || model.manifest.version !== version)
        throw new CascadeError(ERROR_CODES.MODEL_DIR, `${dir} holds ${model.manifest.name}@${model.manifest.version}`);
      s = await loadVersion(model, o, this.metrics, this.log);
      if (this.state !== 'running') throw new CascadeError(ERROR_CODES.STATE, `the worker is ${this.state}`);
      this.versions.set(version, s);
      await this.serve(s);
      this.metrics.setVersions(this.servedVersions);
      this.metrics.modelVersions.inc({ result: 'added' });
      this.log('model_version_added', { model: name, version, from, ms: Math.round(performance.now() - started), serving: this.servedVersions }); // prettier-ignore
    } catch (err) {
      if (s) {
        this.versions.delete(version);
        await s.service?.stop().catch(() => undefined);
        await s.runner.close();
      }
      this.refuse(version, (err as Error).message);
    }
  }

  private refuse(version: string, why: string): void {
    this.refused.set(version, why);
    this.metrics.modelVersions.inc({ result: 'refused' });
    this.log('model_version_refused', { model: this.model.manifest.name, version, error: clip(why, 300), serving: this.servedVersions, hint: 'the worker keeps serving the versions it has' }); // prettier-ignore
  }

  /** Stops a version's endpoints, answers what it has queued, then closes its stages. */
  private drop(version: string): void {
    const s = this.versions.get(version);
    if (!s || s.draining) return;
    s.draining = true;
    this.metrics.setVersions(this.servedVersions);
    const dropped = (async () => {
      await s.service?.stop().catch(() => undefined);
      await s.batcher.idle();
      await s.runner.close();
      this.versions.delete(version);
      this.metrics.modelVersions.inc({ result: 'dropped' });
      this.log('model_version_dropped', { model: this.model.manifest.name, version, serving: this.servedVersions });
    })();
    this.drops.set(version, dropped);
    void dropped.finally(() => this.drops.delete(version));
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
        ? [...this.versions.values()].filter((v) => !v.draining || v === s).map((v) => v.model.manifest)
        : s.model.manifest;
      const req = validateRequest(msg.data, serves, this.options.maxRequestBytes);
      answering = this.versions.get(req.modelVersion)!;
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
        await this.reconciler.idle();
        const stopping = [...this.versions.values()].map(
          async (s) => void (await s.service?.stop().catch(() => undefined)),
        );
        await Promise.all(stopping);
        await Promise.all([...this.versions.values()].map((s) => s.batcher.idle()));
      }
      await Promise.all(this.drops.values());
      await this.link.close();
      for (const s of this.versions.values()) await s.runner.close();
      await this.metricsServer?.close();
      this.state = 'stopped';
      this.log('worker_stopped', { counts: this.counts, ...(this.failure ? { error: this.failure.message } : {}) });
      this.resolveStopped();
    })();
    return this.shuttingDown;
  }
}

/**
 * Loads a model version's stages on the worker's provider, warms them up and checks them against the CPU provider
 * (a provider that cannot run the graphs, or miscomputes a kernel, fails here, not on the first request).
 */
async function loadVersion(
  model: ModelDir,
  o: CompiledWorkerOptions,
  metrics: WorkerMetrics,
  log: Log,
): Promise<Served> {
  const stages = model.manifest.stages.length;
  const runner = await StageRunner.create(model, {
    executionProvider: o.executionProvider,
    threads: o.threads,
    // Every first stage a request can name, but the last (one stage is one graph already).
    fused: o.fuse === 'on' ? Array.from({ length: stages - 1 }, (_, s) => s) : [],
  });
  const warm = performance.now();
  let parity: ParityReport;
  try {
    await warmUp(runner, model, o.executionProvider);
    parity = await checkAgainstCpu(runner, model, o.executionProvider);
  } catch (err) {
    await runner.close();
    throw err;
  }
  log('worker_warmed_up', {
    version: model.manifest.version,
    ep: o.executionProvider,
    ...(runner.fused.length ? { one_graph_from_stages: runner.fused } : {}),
    ms: Math.round(performance.now() - warm),
    ...(parity.images ? { cpu_parity_max_relative_diff: Number(parity.maxRelativeDiff.toPrecision(3)) } : {}),
  });
  const batcher = new Batcher(runner, model.manifest, o, {
    batch: (size, queued) => {
      metrics.batchSize.observe(size);
      for (const q of queued) metrics.queueSeconds.observe(q);
    },
    stage: (stage, seconds) => metrics.computeSeconds.observe({ stage: String(stage) }, seconds),
  });
  return { model, runner, batcher, draining: false };
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
