import {
  CascadeError,
  clip,
  ERROR_CODES,
  ErrorCode,
  RESULTS_STREAM,
  subjects,
  v1,
  type InferReplyMessage,
} from '@cascade/proto';
import { checkAgainstCpu, loadModelDir, StageRunner, warmUp, type ModelDir, type ParityReport } from '@cascade/runtime';
import {
  ensureFleetBuckets,
  resolveModel,
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

export type WorkerState = 'created' | 'running' | 'draining' | 'stopped';

/** Counts kept by a worker, by reply status (`ok` or an error code). */
export type WorkerCounts = Record<string, number>;

/** Longest error message a reply carries. */
const MAX_ERROR_MESSAGE = 300;

/**
 * A cloud worker: a NATS service endpoint on cascade.v1.infer.<model> in a queue group. `create()` loads the model
 * and connects; `run()` serves until `shutdown()` (or SIGTERM in the CLI), then drains: it stops taking requests,
 * answers everything queued, and resolves.
 */
export class CloudWorker {
  state: WorkerState = 'created';
  readonly counts: WorkerCounts = {};
  private service: Service | undefined;
  private stopped!: Promise<void>;
  private resolveStopped!: () => void;
  private shuttingDown: Promise<void> | undefined;
  private metricsServer: MetricsServer | undefined;
  private failure: Error | undefined;

  private constructor(
    readonly options: CompiledWorkerOptions,
    readonly model: ModelDir,
    private readonly link: NatsLink,
    private readonly nc: NatsConnection,
    private readonly runner: StageRunner,
    private readonly batcher: Batcher,
    private readonly log: Log,
    readonly metrics: WorkerMetrics,
  ) {
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  static async create(options: WorkerOptions, log: Log = stderrLog): Promise<CloudWorker> {
    const o = compileWorkerOptions(options);
    const dir = await resolveModel(o.model, { servers: o.nats, auth: o.natsAuth, ...(o.modelCache ? { cache: o.modelCache } : {}), log }); // prettier-ignore
    const model = await loadModelDir(dir);
    const runner = await StageRunner.create(model, { executionProvider: o.executionProvider, threads: o.threads });
    // A provider that cannot run the graphs fails here, with what is missing, not on the first request.
    // A GPU provider must also compute what the CPU provider computes: one that miscomputes a kernel fails here.
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
      ep: o.executionProvider,
      ms: Math.round(performance.now() - warm),
      ...(parity.images ? { cpu_parity_max_relative_diff: Number(parity.maxRelativeDiff.toPrecision(3)) } : {}),
    });
    let link: NatsLink;
    try {
      link = await NatsLink.open({
        servers: o.nats,
        via: o.natsVia,
        name: `cascade-cloud ${o.id}`,
        auth: o.natsAuth,
        log,
        firstConnect: 'now',
      });
    } catch (err) {
      await runner.close();
      throw err;
    }
    const nc = link.nc!;
    const m = model.manifest;
    // eslint-disable-next-line prefer-const -- assigned below, after the metrics that read it at scrape time
    let batcher: Batcher | undefined;
    const metrics = new WorkerMetrics(
      { worker: o.id, model: m.name, modelVersion: m.version, ep: o.executionProvider },
      () => batcher?.depth ?? 0,
      () => nc,
      () => link.connected,
    );
    batcher = new Batcher(runner, m, o, {
      batch: (size, queued) => {
        metrics.batchSize.observe(size);
        for (const q of queued) metrics.queueSeconds.observe(q);
      },
      stage: (stage, seconds) => metrics.computeSeconds.observe({ stage: String(stage) }, seconds),
    });
    const worker = new CloudWorker(o, model, link, nc, runner, batcher, log, metrics);
    // Closed for good (not by shutdown): stop, so that the CLI exits non-zero and an orchestrator restarts it.
    void link.lost.then((err) => worker.fail(err));
    return worker;
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

  get queueDepth(): number {
    return this.batcher.depth;
  }

  /** Starts serving; resolves when the worker has drained and stopped. */
  async run(): Promise<void> {
    if (this.state !== 'created') throw new CascadeError(ERROR_CODES.STATE, `run() called in state ${this.state}`);
    const m = this.model.manifest;
    this.service = await new Svcm(this.nc).add({
      name: 'cascade-worker',
      version: '0.1.0',
      description: `finishes ${m.name} frames from stage 1 on`,
      metadata: {
        model: m.name,
        model_version: m.version,
        worker: this.options.id,
        ep: this.options.executionProvider,
      },
      queue: this.options.queue,
    });
    // The version's own subject, and the model's subject of clients from before versioned subjects.
    const handler = (err: Error | null, msg: ServiceMsg) => {
      if (err) this.log('endpoint_error', { error: err.message });
      else this.handle(msg);
    };
    this.service.addEndpoint('infer', { subject: subjects.infer(m.name, m.version), handler });
    this.service.addEndpoint('infer-unversioned', { subject: subjects.infer(m.name), handler });
    await this.nc.flush(); // the server has the subscription before we say we are serving
    // The cloud side owns the results stream: create it when missing, so that edges' results have somewhere to go.
    const replicas = this.options.resultsReplicas;
    ensureResultsStream(this.nc, replicas === undefined ? {} : { replicas }).then(
      (stream) => {
        if (stream.created)
          this.log('results_stream_created', { stream: RESULTS_STREAM.name, replicas: stream.replicas });
        else if (replicas !== undefined && stream.replicas !== replicas)
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
    if (this.options.metricsPort >= 0) {
      this.metricsServer = await serveMetrics(
        this.metrics.registry,
        this.options.metricsPort,
        this.options.metricsHost,
        {
          '/healthz': async () => {
            const ok = !this.failure && !this.nc.isClosed();
            return {
              status: ok ? 200 : 503,
              type: 'text/plain',
              body: ok ? 'ok\n' : `failed: ${this.failure?.message ?? 'NATS closed'}\n`,
            };
          },
          '/readyz': async () => {
            const ready = this.state === 'running' && this.link.connected;
            const why = this.state !== 'running' ? this.state : 'NATS disconnected';
            return { status: ready ? 200 : 503, type: 'text/plain', body: ready ? 'ready\n' : `not ready: ${why}\n` };
          },
        },
      );
    }
    this.state = 'running';
    this.log('worker_started', {
      id: this.options.id,
      ep: this.options.executionProvider,
      model: m.name,
      version: m.version,
      subjects: [subjects.infer(m.name, m.version), subjects.infer(m.name)],
      metrics_port: this.metricsServer?.port ?? null,
    });
    await this.stopped;
  }

  private handle(msg: ServiceMsg): void {
    const enqueuedAt = performance.now();
    let replied = false;
    const reply = (o: JobReply, requestId: string, shadow = false) => {
      if (replied) return;
      replied = true;
      const status = o.kind === 'prediction' ? 'ok' : o.code;
      let sent: boolean;
      try {
        sent = msg.respond(
          v1.InferReply.encode(toReply(o, requestId, this.options.id, this.model.manifest.classes)).finish(),
        );
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
      this.metrics.requests.inc({ status });
      this.metrics.requestSeconds.observe((performance.now() - enqueuedAt) / 1000);
    };
    // Refusals that need no decoding come first, so a flood is shed at the cost of reading one field.
    if (this.state !== 'running') {
      reply({ kind: 'error', code: ErrorCode.DRAINING, message: 'worker is shutting down' }, peekRequestId(msg.data));
      return;
    }
    if (this.batcher.depth >= this.options.queueLimit) {
      reply(
        { kind: 'error', code: ErrorCode.OVERLOADED, message: `queue full (${this.options.queueLimit})` },
        peekRequestId(msg.data),
      );
      return;
    }
    try {
      const req = validateRequest(msg.data, this.model.manifest, this.options.maxRequestBytes);
      this.batcher.submit({ req, enqueuedAt, reply: (o) => reply(o, req.requestId, req.shadow) });
    } catch (err) {
      const e = err instanceof RequestError ? err : new RequestError(ErrorCode.INTERNAL, (err as Error).message);
      if (e.code === ErrorCode.INTERNAL) this.log('request_failed', { error: e.message });
      reply({ kind: 'error', code: e.code, message: e.message }, peekRequestId(msg.data));
    }
  }

  /** Stops taking work, answers what is queued, closes NATS and the stage runner. Idempotent. */
  shutdown(): Promise<void> {
    this.shuttingDown ??= (async () => {
      if (this.state === 'running') {
        this.state = 'draining';
        this.log('worker_draining', { queued: this.batcher.depth });
        await this.service?.stop().catch(() => undefined);
        await this.batcher.idle();
      }
      await this.link.close();
      await this.runner.close();
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
