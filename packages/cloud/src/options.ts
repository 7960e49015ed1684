import { EXECUTION_PROVIDERS, type ExecutionProvider } from '@cascade/runtime';
import { DEFAULT_RESULTS_LIMITS, type NatsAuth, type ResultsStreamLimits } from '@cascade/service';
import { hostname } from 'node:os';
import { ConfigError } from '@cascade/proto';

/** Options of a cloud worker. */
export interface WorkerOptions {
  /**
   * Model directory, or `NAME@VERSION` from the model registry in NATS (cached in `modelCache`; the cache serves
   * when NATS cannot be reached).
   */
  model: string;
  /** Where registry models are cached. @default $XDG_CACHE_HOME/cascade/models, else ~/.cache/cascade/models */
  modelCache?: string;
  /** NATS server URL(s). @default 'nats://127.0.0.1:4222' */
  nats?: string;
  /** Worker name in replies, service info and logs. @default `<hostname>-<pid>` */
  id?: string;
  /** Largest batch per stage run, at most MAX_BATCH. @default by provider (BATCH_DEFAULTS): 32 on cpu, 256 on a GPU */
  maxBatch?: number;
  /** Longest a request waits for a batch to fill, in ms. @default by provider: 2 on cpu, 5 on a GPU */
  maxDelayMs?: number;
  /** Batches being computed at once: with 2, the next batch is assembled and copied while one computes. @default 1 on cpu, 2 on a GPU */
  batchesInFlight?: number;
  /** Requests queued before new ones get OVERLOADED. @default by provider: 256 on cpu, 2048 on a GPU */
  queueLimit?: number;
  /** Largest request accepted, in bytes. @default 1048576 */
  maxRequestBytes?: number;
  /** @default 'cpu' */
  executionProvider?: ExecutionProvider;
  /** onnxruntime intra-op threads (0: onnxruntime's choice). @default 0 */
  threads?: number;
  /** Queue group of the service endpoint. @default 'cascade-workers' */
  queue?: string;
  /** Port of GET /metrics; 0 picks a free port, -1 turns it off. @default 9464 */
  metricsPort?: number;
  /** Address /metrics listens on. @default '0.0.0.0' */
  metricsHost?: string;
  /** NATS credentials and TLS; replies to the worker's own requests come to `_INBOX_worker`. @default none */
  natsAuth?: NatsAuth;
  /** Where `nats` came from, named in connection errors. @default 'the nats option' */
  natsVia?: string;
  /**
   * Copies of the results stream in a JetStream cluster (1 to 5; 3 for a three-node cluster) when the worker creates
   * it. An existing stream is left as it is; a different count is logged (`results_stream_replicas_differ`).
   * @default 1
   */
  resultsReplicas?: number;
  /**
   * The results stream's limits (size, age, de-duplication window): a new stream is created with them, and an
   * existing one brought to them (`results_stream_updated`); those not given are the defaults for a new stream and
   * left as they are on an existing one. Size the stream for the fleet: 50 cameras at 5 frames/s store about 5 GB
   * of results a day.
   */
  resultsLimits?: Partial<ResultsStreamLimits>;
  /**
   * Follow the model's rollout in the fleet's settings bucket (`models.<name>`): serve the versions it lists, fetched
   * from the model registry, and drop the others. @default true
   */
  rollout?: boolean;
  /**
   * Run the cloud stages as one joined graph per first stage (the carried states stay inside onnxruntime, on the
   * GPU) instead of one graph per stage. Frames still leave at the first exit that is sure enough, with the same
   * answers, but every frame of a batch is computed to the last exit. `auto`: on for GPU providers, whose time went
   * to the states' trips to the host (5.9x bare at batch 512 on an H200), off on the CPU, where frames that leave
   * early save the later stages. @default 'auto'
   */
  fuse?: FuseMode;
  /** Most model versions served at once (each holds its stages in memory), 1 to 8. @default 3 */
  maxVersions?: number;
}

export type CompiledWorkerOptions = Required<Omit<WorkerOptions, 'resultsReplicas' | 'modelCache' | 'resultsLimits'>> &
  Pick<WorkerOptions, 'resultsReplicas' | 'modelCache' | 'resultsLimits'>;

/** The largest batch a worker forms. */
export const MAX_BATCH = 1024;

/**
 * Batching by execution provider: a CPU is saturated by small batches and gains nothing from overlap; a GPU needs
 * large batches to be busy, and a second batch in flight hides the copies and the JavaScript around each one.
 */
export const BATCH_DEFAULTS = {
  cpu: { maxBatch: 32, maxDelayMs: 2, batchesInFlight: 1, queueLimit: 256 },
  webgpu: { maxBatch: 256, maxDelayMs: 5, batchesInFlight: 2, queueLimit: 2048 },
  cuda: { maxBatch: 256, maxDelayMs: 5, batchesInFlight: 2, queueLimit: 2048 },
} as const satisfies Record<
  ExecutionProvider,
  { maxBatch: number; maxDelayMs: number; batchesInFlight: number; queueLimit: number }
>;

export const DEFAULT_WORKER_OPTIONS = {
  nats: 'nats://127.0.0.1:4222',
  maxRequestBytes: 1024 * 1024,
  executionProvider: 'cpu',
  threads: 0,
  queue: 'cascade-workers',
  metricsPort: 9464,
  metricsHost: '0.0.0.0',
  natsVia: 'the nats option',
  rollout: true,
  maxVersions: 3,
} as const;

function positiveInt(name: string, v: number, min = 1): number {
  if (!Number.isInteger(v) || v < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/**
 * Each version served is a service instance that answers service discovery; the shipped NATS configuration lets a
 * worker answer a request 8 times (allow_responses).
 */
function maxVersions(v: number): number {
  positiveInt('maxVersions', v);
  if (v > 8) throw new ConfigError(`maxVersions must be at most 8, got ${v}`);
  return v;
}

/** How a worker runs its cloud stages (WorkerOptions.fuse). */
export const FUSE_MODES = ['auto', 'on', 'off'] as const;
export type FuseMode = (typeof FUSE_MODES)[number];

/** Fills defaults and validates every field once, at start-up. */
export function compileWorkerOptions(o: WorkerOptions): CompiledWorkerOptions {
  if (!o.model) throw new ConfigError('model: a model directory is required');
  const ep = o.executionProvider ?? DEFAULT_WORKER_OPTIONS.executionProvider;
  if (!EXECUTION_PROVIDERS.includes(ep)) {
    throw new ConfigError(`executionProvider must be one of ${EXECUTION_PROVIDERS.join(', ')}, got ${String(ep)}`);
  }
  const d = BATCH_DEFAULTS[ep];
  const maxDelayMs = o.maxDelayMs ?? d.maxDelayMs;
  if (!(maxDelayMs >= 0)) throw new ConfigError(`maxDelayMs must be >= 0, got ${maxDelayMs}`);
  const maxBatch = positiveInt('maxBatch', o.maxBatch ?? d.maxBatch);
  if (maxBatch > MAX_BATCH) throw new ConfigError(`maxBatch must be at most ${MAX_BATCH}, got ${maxBatch}`);
  if (o.resultsReplicas !== undefined) positiveInt('resultsReplicas', o.resultsReplicas);
  if (o.resultsReplicas !== undefined && o.resultsReplicas > 5)
    throw new ConfigError(`resultsReplicas must be at most 5 (JetStream's limit), got ${o.resultsReplicas}`);
  const batchesInFlight = positiveInt('batchesInFlight', o.batchesInFlight ?? d.batchesInFlight);
  if (batchesInFlight > 8) throw new ConfigError(`batchesInFlight must be at most 8, got ${batchesInFlight}`);
  const fuse = o.fuse ?? 'auto';
  if (!FUSE_MODES.includes(fuse)) throw new ConfigError(`fuse must be auto, on or off, got ${String(fuse)}`);
  return {
    model: o.model,
    ...(o.modelCache ? { modelCache: o.modelCache } : {}),
    nats: o.nats ?? DEFAULT_WORKER_OPTIONS.nats,
    id: o.id ?? `${hostname()}-${process.pid}`,
    maxBatch,
    maxDelayMs,
    batchesInFlight,
    queueLimit: positiveInt('queueLimit', o.queueLimit ?? d.queueLimit),
    maxRequestBytes: positiveInt('maxRequestBytes', o.maxRequestBytes ?? DEFAULT_WORKER_OPTIONS.maxRequestBytes, 1024),
    executionProvider: ep,
    threads: positiveInt('threads', o.threads ?? DEFAULT_WORKER_OPTIONS.threads, 0),
    queue: o.queue ?? DEFAULT_WORKER_OPTIONS.queue,
    metricsPort: positiveInt('metricsPort', o.metricsPort ?? DEFAULT_WORKER_OPTIONS.metricsPort, -1),
    metricsHost: o.metricsHost ?? DEFAULT_WORKER_OPTIONS.metricsHost,
    natsAuth: { inboxPrefix: '_INBOX_worker', ...o.natsAuth },
    natsVia: o.natsVia ?? DEFAULT_WORKER_OPTIONS.natsVia,
    ...(o.resultsReplicas !== undefined ? { resultsReplicas: o.resultsReplicas } : {}),
    ...(o.resultsLimits ? { resultsLimits: resultsLimits(o.resultsLimits) } : {}),
    rollout: o.rollout ?? DEFAULT_WORKER_OPTIONS.rollout,
    maxVersions: maxVersions(o.maxVersions ?? DEFAULT_WORKER_OPTIONS.maxVersions),
    fuse: fuse === 'auto' ? (ep === 'cpu' ? 'off' : 'on') : fuse,
  };
}

/** Stream limits as given, checked: a positive size and age, and a window within the age. */
function resultsLimits(l: Partial<ResultsStreamLimits>): Partial<ResultsStreamLimits> {
  for (const [k, v] of Object.entries(l))
    if (!(Number.isFinite(v) && v > 0)) throw new ConfigError(`resultsLimits.${k} must be > 0, got ${v}`);
  const age = l.maxAgeMs ?? DEFAULT_RESULTS_LIMITS.maxAgeMs;
  if (l.duplicateWindowMs !== undefined && l.duplicateWindowMs > age)
    throw new ConfigError(
      `resultsLimits.duplicateWindowMs (${l.duplicateWindowMs} ms) must not exceed the stream's age limit (${age} ms)`,
    );
  return { ...l };
}
