import {
  compileOptions,
  ConfigError,
  optionDefaults,
  type CompiledOptionsOf,
  type OptionSpecs,
  type OptionsOf,
} from '@cascade/proto';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '@cascade/runtime';
import { DEFAULT_RESULTS_LIMITS, MODEL_OPTIONS, type NatsAuth, type ResultsStreamLimits } from '@cascade/service';
import { hostname } from 'node:os';

/** Largest batch a worker forms. */
export const MAX_BATCH = 1024;

/** Batching defaults by provider: a GPU gains from larger batches and two in flight, the CPU from short waits. */
export const BATCH_DEFAULTS = {
  cpu: { maxBatch: 32, maxDelayMs: 2, batchesInFlight: 1, queueLimit: 256 },
  webgpu: { maxBatch: 256, maxDelayMs: 5, batchesInFlight: 2, queueLimit: 2048 },
  cuda: { maxBatch: 256, maxDelayMs: 5, batchesInFlight: 2, queueLimit: 2048 },
} as const satisfies Record<
  ExecutionProvider,
  { maxBatch: number; maxDelayMs: number; batchesInFlight: number; queueLimit: number }
>;

export const FUSE_MODES = ['auto', 'on', 'off'] as const;
export type FuseMode = (typeof FUSE_MODES)[number];

/**
 * The worker's options, each declared once: type, default and bounds, flag, environment variable and help. The
 * options type, the defaults, the checks, cascade-cloud's flags and the README's flag table come from here.
 */
export const WORKER_OPTIONS = {
  ...MODEL_OPTIONS,
  nats: {
    type: 'string',
    default: 'nats://127.0.0.1:4222',
    flag: 'nats',
    env: 'NATS_URL',
    help: 'NATS server URL(s), comma-separated; the worker waits for NATS and serves once it is there',
  },
  id: {
    type: 'string',
    flag: 'id',
    env: 'CASCADE_WORKER_ID',
    defaultDoc: '<hostname>-<pid>',
    help: 'worker name in replies, service info and logs',
  },
  executionProvider: {
    type: 'choice',
    choices: EXECUTION_PROVIDERS,
    default: 'cpu',
    flag: 'ep',
    env: 'CASCADE_EP',
    help: 'execution provider: cpu, webgpu or cuda; never falls back to another (a provider that cannot start exits 2)',
  },
  maxBatch: {
    type: 'int',
    min: 1,
    max: MAX_BATCH,
    flag: 'max-batch',
    env: 'CASCADE_MAX_BATCH',
    defaultDoc: '32 on cpu, 256 on a GPU',
    help: 'largest batch per stage run',
  },
  maxDelayMs: {
    type: 'number',
    min: 0,
    flag: 'max-delay-ms',
    env: 'CASCADE_MAX_DELAY_MS',
    defaultDoc: '2 on cpu, 5 on a GPU',
    help: 'longest wait for a batch to fill',
  },
  batchesInFlight: {
    type: 'int',
    min: 1,
    max: 8,
    flag: 'batches-in-flight',
    env: 'CASCADE_BATCHES_IN_FLIGHT',
    defaultDoc: '1 on cpu, 2 on a GPU',
    help: 'batches computed at once',
  },
  queueLimit: {
    type: 'int',
    min: 1,
    flag: 'queue-limit',
    env: 'CASCADE_QUEUE_LIMIT',
    defaultDoc: '256 on cpu, 2048 on a GPU',
    help: 'queued requests before new ones are refused (OVERLOADED)',
  },
  maxRequestBytes: {
    type: 'int',
    min: 1024,
    default: 1024 * 1024,
    flag: 'max-request-bytes',
    env: 'CASCADE_MAX_REQUEST_BYTES',
    help: 'largest request; a larger one is refused (TOO_LARGE)',
  },
  threads: {
    type: 'int',
    min: 0,
    default: 0,
    flag: 'threads',
    env: 'CASCADE_THREADS',
    help: "onnxruntime intra-op threads (0: onnxruntime's choice)",
  },
  fuse: {
    type: 'choice',
    choices: FUSE_MODES,
    default: 'auto',
    flag: 'fuse',
    env: 'CASCADE_FUSE',
    help: 'run the cloud stages from each first stage as one graph: auto (on a GPU), on or off',
  },
  queue: { type: 'string', default: 'cascade-workers', help: 'NATS queue group the workers share' },
  metricsPort: {
    type: 'int',
    min: -1,
    default: 9464,
    flag: 'metrics-port',
    env: 'CASCADE_METRICS_PORT',
    help: 'port of /metrics, /healthz and /readyz; 0: any free port, -1: off',
  },
  metricsHost: {
    type: 'string',
    default: '0.0.0.0',
    flag: 'metrics-host',
    env: 'CASCADE_METRICS_HOST',
    help: 'address they listen on',
  },
  resultsReplicas: {
    type: 'int',
    min: 1,
    max: 5,
    flag: 'results-replicas',
    env: 'CASCADE_RESULTS_REPLICAS',
    defaultDoc: '1 for a new stream; an existing one is left as it is',
    help: 'copies of the results stream when a worker creates it in a JetStream cluster',
  },
  resultsMaxBytes: {
    type: 'bytes',
    flag: 'results-max-bytes',
    env: 'CASCADE_RESULTS_MAX_BYTES',
    defaultDoc: '1GiB for a new stream',
    help: 'size limit of the results stream (500MiB, 20GB, ...), applied to an existing stream too',
  },
  resultsMaxAgeMs: {
    type: 'duration',
    flag: 'results-max-age',
    env: 'CASCADE_RESULTS_MAX_AGE',
    defaultDoc: '7d for a new stream',
    help: 'age limit of the results stream (12h, 7d, ...), applied to an existing stream too',
  },
  resultsDedupWindowMs: {
    type: 'duration',
    flag: 'results-dedup-window',
    env: 'CASCADE_RESULTS_DEDUP_WINDOW',
    defaultDoc: '10m for a new stream',
    help: "how long the results stream remembers a result's id, to store a resend once",
  },
  rollout: {
    type: 'switch',
    default: true,
    flag: 'rollout',
    env: 'CASCADE_ROLLOUT',
    help: "on: serve the versions the model's rollout lists (cascade rollout); off: only --model",
  },
  maxVersions: {
    type: 'int',
    min: 1,
    max: 8,
    default: 3,
    flag: 'max-versions',
    env: 'CASCADE_MAX_VERSIONS',
    help: 'most model versions served at once during a rollout',
  },
  natsVia: { type: 'string', default: 'the nats option', help: 'where `nats` came from, named in connection errors' },
} as const satisfies OptionSpecs;

/** Options of a cloud worker (WORKER_OPTIONS), with its NATS credentials and TLS. */
export type WorkerOptions = OptionsOf<typeof WORKER_OPTIONS> & { model: string; natsAuth?: NatsAuth };

export type CompiledWorkerOptions = CompiledOptionsOf<typeof WORKER_OPTIONS> & {
  model: string;
  id: string;
  natsAuth: NatsAuth;
  maxBatch: number;
  maxDelayMs: number;
  batchesInFlight: number;
  queueLimit: number;
  /** auto resolved: on on a GPU, off on the CPU. */
  fuse: 'on' | 'off';
  /** The results stream's limits asked for (none: the stream's defaults for a new one, an existing one unchanged). */
  resultsLimits?: Partial<ResultsStreamLimits>;
};

export const DEFAULT_WORKER_OPTIONS = optionDefaults(WORKER_OPTIONS);

/** Fills defaults (batching by provider) and checks every option once at start-up; errors name the option. */
export function compileWorkerOptions(o: WorkerOptions): CompiledWorkerOptions {
  if (!o.model) throw new ConfigError('model: a model directory is required');
  const ep = compileOptions({ executionProvider: WORKER_OPTIONS.executionProvider }, o).executionProvider;
  const c = compileOptions(WORKER_OPTIONS, { ...BATCH_DEFAULTS[ep], id: `${hostname()}-${process.pid}`, ...o });
  const limits: Partial<ResultsStreamLimits> = {
    ...(c.resultsMaxBytes !== undefined ? { maxBytes: c.resultsMaxBytes } : {}),
    ...(c.resultsMaxAgeMs !== undefined ? { maxAgeMs: c.resultsMaxAgeMs } : {}),
    ...(c.resultsDedupWindowMs !== undefined ? { duplicateWindowMs: c.resultsDedupWindowMs } : {}),
  };
  const age = limits.maxAgeMs ?? DEFAULT_RESULTS_LIMITS.maxAgeMs;
  if (limits.duplicateWindowMs !== undefined && limits.duplicateWindowMs > age)
    throw new ConfigError(
      `resultsDedupWindowMs (${limits.duplicateWindowMs} ms) must not exceed the stream's age limit (${age} ms)`,
    );
  return {
    ...c,
    model: o.model,
    id: c.id!,
    natsAuth: { inboxPrefix: '_INBOX_worker', ...o.natsAuth },
    maxBatch: c.maxBatch!,
    maxDelayMs: c.maxDelayMs!,
    batchesInFlight: c.batchesInFlight!,
    queueLimit: c.queueLimit!,
    fuse: c.fuse === 'auto' ? (ep === 'cpu' ? 'off' : 'on') : c.fuse,
    ...(Object.keys(limits).length ? { resultsLimits: limits } : {}),
  };
}
