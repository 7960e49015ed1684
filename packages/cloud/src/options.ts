import { EXECUTION_PROVIDERS, type ExecutionProvider } from '@cascade/runtime';
import { type NatsAuth } from '@cascade/service';
import { hostname } from 'node:os';
import { ConfigError } from '@cascade/proto';

/** Options of a cloud worker. */
export interface WorkerOptions {
  /** Model directory. */
  model: string;
  /** NATS server URL(s). @default 'nats://127.0.0.1:4222' */
  nats?: string;
  /** Worker name in replies, service info and logs. @default `<hostname>-<pid>` */
  id?: string;
  /** Largest batch per stage run. @default 32 */
  maxBatch?: number;
  /** Longest a request waits for a batch to fill, in ms. @default 2 */
  maxDelayMs?: number;
  /** Requests queued before new ones get OVERLOADED. @default 256 */
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
}

export type CompiledWorkerOptions = Required<WorkerOptions>;

export const DEFAULT_WORKER_OPTIONS = {
  nats: 'nats://127.0.0.1:4222',
  maxBatch: 32,
  maxDelayMs: 2,
  queueLimit: 256,
  maxRequestBytes: 1024 * 1024,
  executionProvider: 'cpu',
  threads: 0,
  queue: 'cascade-workers',
  metricsPort: 9464,
  metricsHost: '0.0.0.0',
  natsVia: 'the nats option',
} as const;

function positiveInt(name: string, v: number, min = 1): number {
  if (!Number.isInteger(v) || v < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

/** Fills defaults and validates every field once, at start-up. */
export function compileWorkerOptions(o: WorkerOptions): CompiledWorkerOptions {
  if (!o.model) throw new ConfigError('model: a model directory is required');
  const ep = o.executionProvider ?? DEFAULT_WORKER_OPTIONS.executionProvider;
  if (!EXECUTION_PROVIDERS.includes(ep)) {
    throw new ConfigError(`executionProvider must be one of ${EXECUTION_PROVIDERS.join(', ')}, got ${String(ep)}`);
  }
  const maxDelayMs = o.maxDelayMs ?? DEFAULT_WORKER_OPTIONS.maxDelayMs;
  if (!(maxDelayMs >= 0)) throw new ConfigError(`maxDelayMs must be >= 0, got ${maxDelayMs}`);
  return {
    model: o.model,
    nats: o.nats ?? DEFAULT_WORKER_OPTIONS.nats,
    id: o.id ?? `${hostname()}-${process.pid}`,
    maxBatch: positiveInt('maxBatch', o.maxBatch ?? DEFAULT_WORKER_OPTIONS.maxBatch),
    maxDelayMs,
    queueLimit: positiveInt('queueLimit', o.queueLimit ?? DEFAULT_WORKER_OPTIONS.queueLimit),
    maxRequestBytes: positiveInt('maxRequestBytes', o.maxRequestBytes ?? DEFAULT_WORKER_OPTIONS.maxRequestBytes, 1024),
    executionProvider: ep,
    threads: positiveInt('threads', o.threads ?? DEFAULT_WORKER_OPTIONS.threads, 0),
    queue: o.queue ?? DEFAULT_WORKER_OPTIONS.queue,
    metricsPort: positiveInt('metricsPort', o.metricsPort ?? DEFAULT_WORKER_OPTIONS.metricsPort, -1),
    metricsHost: o.metricsHost ?? DEFAULT_WORKER_OPTIONS.metricsHost,
    natsAuth: { inboxPrefix: '_INBOX_worker', ...o.natsAuth },
    natsVia: o.natsVia ?? DEFAULT_WORKER_OPTIONS.natsVia,
  };
}
