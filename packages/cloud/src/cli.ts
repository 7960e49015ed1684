#!/usr/bin/env node
// cascade-cloud: serve a model's cloud stages on NATS until SIGTERM/SIGINT, then drain and exit 0.
import {
  bytesFlag,
  durationFlag,
  FlagError,
  flagSource,
  isMain,
  MODEL_FLAGS,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  numberFlag,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { DEFAULT_WORKER_OPTIONS as D, FUSE_MODES, type FuseMode, type WorkerOptions } from './options.js';
import { CloudWorker } from './worker.js';

const FLAGS = {
  ...MODEL_FLAGS,
  nats: { type: 'string', env: 'NATS_URL', help: `NATS server URL(s), comma-separated (default ${D.nats})` },
  ...NATS_AUTH_FLAGS,
  id: { type: 'string', env: 'CASCADE_WORKER_ID', help: 'worker id (default <hostname>-<pid>)' },
  'max-batch': {
    type: 'string',
    env: 'CASCADE_MAX_BATCH',
    help: `largest batch, at most 1024 (default 32 on cpu, 256 on a GPU)`,
  },
  'batches-in-flight': {
    type: 'string',
    env: 'CASCADE_BATCHES_IN_FLIGHT',
    help: 'batches computed at once (default 1 on cpu, 2 on a GPU)',
  },
  'max-delay-ms': {
    type: 'string',
    env: 'CASCADE_MAX_DELAY_MS',
    help: 'batching delay in ms (default 2 on cpu, 5 on a GPU)',
  },
  'queue-limit': {
    type: 'string',
    env: 'CASCADE_QUEUE_LIMIT',
    help: 'queued requests before OVERLOADED (default 256 on cpu, 2048 on a GPU)',
  },
  'max-request-bytes': {
    type: 'string',
    env: 'CASCADE_MAX_REQUEST_BYTES',
    help: `largest request (default ${D.maxRequestBytes})`,
  },
  ep: {
    type: 'string',
    env: 'CASCADE_EP',
    help: 'execution provider: cpu, webgpu or cuda (default cpu; never falls back to another)',
  },
  threads: {
    type: 'string',
    env: 'CASCADE_THREADS',
    help: 'onnxruntime intra-op threads (default: onnxruntime decides)',
  },
  'metrics-port': {
    type: 'string',
    env: 'CASCADE_METRICS_PORT',
    help: `/metrics port; 0 = any free port, -1 = off (default ${D.metricsPort})`,
  },
  'metrics-host': { type: 'string', env: 'CASCADE_METRICS_HOST', help: `/metrics address (default ${D.metricsHost})` },
  'results-replicas': {
    type: 'string',
    env: 'CASCADE_RESULTS_REPLICAS',
    help: 'copies of the results stream when a worker creates it in a JetStream cluster, 1-5 (default 1)',
  },
  'results-max-bytes': {
    type: 'string',
    env: 'CASCADE_RESULTS_MAX_BYTES',
    help: 'size limit of the results stream (500MiB, 20GB, ...); applied to an existing stream too (default 1GiB for a new one)',
  },
  'results-max-age': {
    type: 'string',
    env: 'CASCADE_RESULTS_MAX_AGE',
    help: 'age limit of the results stream (12h, 7d, ...); applied to an existing stream too (default 7d for a new one)',
  },
  'results-dedup-window': {
    type: 'string',
    env: 'CASCADE_RESULTS_DEDUP_WINDOW',
    help: "how long the results stream remembers a result's id to store a resend once (default 10m for a new one)",
  },
  rollout: {
    type: 'string',
    env: 'CASCADE_ROLLOUT',
    help: "on: serve the versions the model's rollout lists (cascade rollout), off: only --model (default on)",
  },
  'max-versions': {
    type: 'string',
    env: 'CASCADE_MAX_VERSIONS',
    help: `most model versions served at once during a rollout (default ${D.maxVersions})`,
  },
  fuse: {
    type: 'string',
    env: 'CASCADE_FUSE',
    help: 'run the cloud stages as one graph: auto (on a GPU), on or off (default auto)',
  },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const USAGE = usage('cascade-cloud --model DIR|NAME@VERSION [options]', FLAGS);

/** Worker options from flags and environment, or 'help'. */
export function parseWorkerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerOptions | 'help' {
  const f = parseFlags(FLAGS, argv, env);
  if (f.help) return 'help';
  const o: WorkerOptions = { model: f.model ?? '' };
  if (f['model-cache']) o.modelCache = f['model-cache'];
  if (f.nats) o.nats = f.nats;
  o.natsVia = flagSource(FLAGS, 'nats', argv, env);
  o.natsAuth = natsAuthFromFlags(f);
  if (f.id) o.id = f.id;
  if (f['metrics-host']) o.metricsHost = f['metrics-host'];
  if (f.ep) o.executionProvider = f.ep as WorkerOptions['executionProvider'];
  if (f.rollout !== undefined) {
    if (f.rollout !== 'on' && f.rollout !== 'off') throw new FlagError(`--rollout must be on or off, got ${f.rollout}`);
    o.rollout = f.rollout === 'on';
  }
  if (f.fuse !== undefined) {
    if (!(FUSE_MODES as readonly string[]).includes(f.fuse))
      throw new FlagError(`--fuse must be auto, on or off, got ${f.fuse}`);
    o.fuse = f.fuse as FuseMode;
  }
  const limits = {
    ...(f['results-max-bytes'] ? { maxBytes: bytesFlag('results-max-bytes', f['results-max-bytes']) } : {}),
    ...(f['results-max-age'] ? { maxAgeMs: durationFlag('results-max-age', f['results-max-age']) } : {}),
    ...(f['results-dedup-window']
      ? { duplicateWindowMs: durationFlag('results-dedup-window', f['results-dedup-window']) }
      : {}),
  };
  if (Object.keys(limits).length > 0) o.resultsLimits = limits;
  const nums = {
    maxBatch: 'max-batch',
    maxDelayMs: 'max-delay-ms',
    batchesInFlight: 'batches-in-flight',
    queueLimit: 'queue-limit',
    maxRequestBytes: 'max-request-bytes',
    threads: 'threads',
    metricsPort: 'metrics-port',
    resultsReplicas: 'results-replicas',
    maxVersions: 'max-versions',
  } as const;
  for (const [key, flag] of Object.entries(nums)) {
    const n = numberFlag(flag, f[flag]);
    if (n !== undefined) o[key as keyof typeof nums] = n;
  }
  return o;
}

async function main(): Promise<void> {
  let options: WorkerOptions | 'help';
  try {
    options = parseWorkerArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`cascade-cloud: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  let worker: CloudWorker;
  try {
    worker = await CloudWorker.create(options);
  } catch (err) {
    process.stderr.write(`cascade-cloud: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void worker.shutdown());
  await worker.run();
  if (worker.failed) {
    process.stderr.write(`cascade-cloud: stopping: ${redactSecrets(worker.failed.message)}\n`);
    process.exit(1);
  }
  process.exit(0);
}

if (isMain(import.meta.url)) void main();
