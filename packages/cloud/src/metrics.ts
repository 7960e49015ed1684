import {
  BUCKETS,
  CASCADE_VERSION,
  createRegistry,
  resultsStreamUse,
  setBuildInfo,
  snapshotGauges,
  type ResultsStreamUse,
} from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** A worker's Prometheus metrics (names are part of the contract; see the package README). */
export class WorkerMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'status' | 'model_version'>;
  readonly queueSeconds: Histogram;
  readonly computeSeconds: Histogram<'stage'>;
  readonly requestSeconds: Histogram;
  readonly batchSize: Histogram;
  readonly repliesFailed: Counter<'status'>;
  readonly shadowRequests: Counter<'status'>;
  readonly modelVersions: Counter<'result'>;
  private readonly build: Record<string, string>;

  constructor(
    labels: { worker: string; model: string; modelVersion: string; ep: string },
    queueDepth: () => number,
    nats: () => NatsConnection | undefined,
    connected: () => boolean = () => Boolean(nats() && !nats()!.isClosed()),
  ) {
    this.build = {
      component: 'cloud',
      version: CASCADE_VERSION,
      model: labels.model,
      model_version: labels.modelVersion,
      ep: labels.ep,
    };
    this.registry = createRegistry({ worker: labels.worker }, this.build);
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'cascade_worker_requests_total',
      help: 'Replies sent, by status (ok or error code) and the model version that answered (empty when none did).',
      labelNames: ['status', 'model_version'],
      registers,
    });
    this.queueSeconds = new Histogram({
      name: 'cascade_worker_queue_seconds',
      help: 'Time from receipt to the start of the batch that ran the request.',
      buckets: [...BUCKETS.workerSeconds],
      registers,
    });
    this.computeSeconds = new Histogram({
      name: 'cascade_worker_compute_seconds',
      help: 'onnxruntime time per stage per batch, measured in the inference thread.',
      labelNames: ['stage'],
      buckets: [...BUCKETS.workerSeconds],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'cascade_worker_request_seconds',
      help: 'Time from receipt to reply (queue + compute), every status.',
      buckets: [...BUCKETS.workerSeconds],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'cascade_worker_batch_size',
      help: 'Requests per batch.',
      buckets: [...BUCKETS.batchSize],
      registers,
    });
    new Gauge({
      name: 'cascade_worker_queue_depth',
      help: 'Requests waiting for a batch: the autoscaling signal.',
      registers,
      collect() {
        this.set(queueDepth());
      },
    });
    this.repliesFailed = new Counter({
      name: 'cascade_worker_replies_failed_total',
      help: 'Replies that could not be sent (no reply subject, too large, connection gone), by the status they carried; not in requests_total.',
      labelNames: ['status'],
      registers,
    });
    this.shadowRequests = new Counter({
      name: 'cascade_worker_shadow_requests_total',
      help: 'Shadow requests (frames an edge already answered, finished to the last exit to measure its exits), by status; not in requests_total.',
      labelNames: ['status'],
      registers,
    });
    for (const status of ['ok', 'OVERLOADED']) this.shadowRequests.inc({ status }, 0);
    this.modelVersions = new Counter({
      name: 'cascade_worker_model_versions_total',
      help: "Model versions the worker was asked to serve or drop by the model's rollout, by result: added, dropped, refused (it could not load one).",
      labelNames: ['result'],
      registers,
    });
    for (const result of ['added', 'dropped', 'refused']) this.modelVersions.inc({ result }, 0);
    natsStats(this.registry, nats, connected);
    resultsStreamStats(this.registry, nats);
  }

  /** The model versions served now: one cascade_build_info series each. */
  setVersions(versions: string[]): void {
    setBuildInfo(
      this.registry,
      versions.map((v) => ({ ...this.build, model_version: v })),
    );
  }
}

/** Client-side NATS counters of a connection, read at scrape time. */
export function natsStats(registry: Registry, nats: () => NatsConnection | undefined, connected: () => boolean): void {
  const registers = [registry];
  new Counter({
    name: 'cascade_nats_messages_total',
    help: 'NATS messages through this connection.',
    labelNames: ['direction'],
    registers,
    collect() {
      const s = nats()?.stats();
      if (!s) return;
      this.reset();
      this.inc({ direction: 'in' }, s.inMsgs);
      this.inc({ direction: 'out' }, s.outMsgs);
    },
  });
  new Counter({
    name: 'cascade_nats_bytes_total',
    help: 'NATS payload bytes through this connection.',
    labelNames: ['direction'],
    registers,
    collect() {
      const s = nats()?.stats();
      if (!s) return;
      this.reset();
      this.inc({ direction: 'in' }, s.inBytes);
      this.inc({ direction: 'out' }, s.outBytes);
    },
  });
  new Gauge({
    name: 'cascade_nats_connected',
    help: '1 while connected to NATS; 0 while reconnecting or closed.',
    registers,
    collect() {
      this.set(connected() ? 1 : 0);
    },
  });
}

/**
 * The results stream's size and age against its limits, read at scrape time (one stream info a scrape, shared by the
 * gauges), so that alerts see it filling up before it drops results. They read 0 while the stream cannot be read.
 */
export function resultsStreamStats(registry: Registry, nats: () => NatsConnection | undefined): void {
  let last: { at: number; use: Promise<ResultsStreamUse | undefined> } | undefined;
  const use = (): Promise<ResultsStreamUse | undefined> => {
    const nc = nats();
    if (!nc || nc.isClosed()) return Promise.resolve(undefined);
    if (!last || performance.now() - last.at > 1000)
      last = { at: performance.now(), use: resultsStreamUse(nc).catch(() => undefined) };
    return last.use;
  };
  snapshotGauges(registry, use, [
    ['cascade_results_stream_bytes', 'Bytes the results stream holds.', (u) => u.bytes],
    ['cascade_results_stream_max_bytes', "The results stream's size limit; past it the oldest results go.", (u) => u.maxBytes],
    ['cascade_results_stream_messages', 'Results the results stream holds.', (u) => u.messages],
    ['cascade_results_stream_oldest_age_seconds', 'Age of the oldest result the results stream holds.', (u) => u.oldestAgeMs / 1000],
    ['cascade_results_stream_max_age_seconds', "The results stream's age limit.", (u) => u.maxAgeMs / 1000],
  ]); // prettier-ignore
}
