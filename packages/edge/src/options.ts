import {
  compileOptions,
  ConfigError,
  EDGE_ID,
  EDGE_LIVE_OPTIONS,
  ENCODINGS,
  optionDefaults,
  type CompiledOptionsOf,
  type OptionSpecs,
  type OptionsOf,
} from '@cascade/proto';
import { COMPRESSIONS } from '@cascade/proto/compress';
import { BACKENDS, INFERENCE_THREADS } from '@cascade/runtime';
import { MODEL_OPTIONS, type NatsAuth } from '@cascade/service';
import { hostname } from 'node:os';
import { DEFAULT_OUTBOX, type OutboxOptions } from './outbox.js';

/**
 * How hard frames travel: image + carried state (`state`), the image alone with the cloud redoing the edge stages
 * (`image`), or per frame, whichever costs less (`auto`: bytes against cloud compute, see `bytesWeight`).
 */
export const OFFLOAD_MODES = ['state', 'image', 'auto'] as const;
export type OffloadMode = (typeof OFFLOAD_MODES)[number];

/**
 * The edge agent's options, each declared once: its type, default and bounds, its flag and environment variable, the
 * fleet setting that changes it live (EDGE_LIVE_OPTIONS), and its help. The options type, the defaults, the checks,
 * cascade-edge's flags and the README's flag table come from here.
 */
export const EDGE_OPTIONS = {
  ...MODEL_OPTIONS,
  nats: {
    type: 'string',
    flag: 'nats',
    env: 'NATS_URL',
    defaultDoc: 'none',
    help: 'NATS server URL(s), comma-separated; without it every hard frame falls back to its best local exit (no_cloud)',
  },
  id: {
    type: 'string',
    pattern: EDGE_ID,
    means: 'letters, digits, "-" or "_", in dot-separated parts such as site-a.agent-1.cam-1 (it ends NATS subjects)',
    flag: 'id',
    env: 'CASCADE_EDGE_ID',
    defaultDoc: 'the hostname',
    help: "camera id, <site>.<agent>.<camera> in a fleet: its results go to cascade.v1.results.<id> and its replies to _INBOX.<id>; with a device's --nats-creds, the camera's name alone (cam-1)",
  },
  split: {
    type: 'int',
    min: 1,
    flag: 'split',
    env: 'CASCADE_SPLIT',
    defaultDoc: "the manifest's default_split, else 1",
    help: 'stages run on the edge',
  },
  ...EDGE_LIVE_OPTIONS,
  mode: {
    type: 'choice',
    choices: OFFLOAD_MODES,
    default: 'state',
    flag: 'mode',
    env: 'CASCADE_OFFLOAD_MODE',
    help: 'how hard frames travel: state (image and carried state), image (the cloud redoes the edge stages), or auto (per frame, the cheaper: bytes against cloud compute)',
  },
  bytesWeight: {
    type: 'number',
    min: 0,
    default: 1,
    flag: 'bytes-weight',
    env: 'CASCADE_BYTES_WEIGHT',
    help: '--mode auto: cost of a kilobyte offloaded',
  },
  computeWeight: {
    type: 'number',
    min: 0,
    default: 0.1,
    flag: 'compute-weight',
    env: 'CASCADE_COMPUTE_WEIGHT',
    help: '--mode auto: cost of a million MACs in the cloud',
  },
  encoding: {
    type: 'choice',
    choices: ENCODINGS,
    default: 'int8',
    flag: 'encoding',
    env: 'CASCADE_ENCODING',
    help: 'encoding of the carried state',
  },
  stateBits: {
    type: 'int',
    min: 2,
    max: 8,
    default: 8,
    flag: 'state-bits',
    env: 'CASCADE_STATE_BITS',
    help: 'int8 state: quantisation levels per channel as bits; the tensor stays int8, fewer levels pack smaller and may cost accuracy',
  },
  compression: {
    type: 'choice',
    choices: COMPRESSIONS,
    default: 'brotli',
    flag: 'compression',
    env: 'CASCADE_COMPRESSION',
    help: 'packing of offloaded tensors: brotli (lossless) or none; workers must understand it (upgrade them first)',
  },
  timeoutMs: {
    type: 'int',
    min: 1,
    default: 1000,
    flag: 'timeout-ms',
    env: 'CASCADE_TIMEOUT_MS',
    help: 'offload deadline; past it the frame falls back',
  },
  maxInflight: {
    type: 'int',
    min: 1,
    default: 16,
    flag: 'max-inflight',
    env: 'CASCADE_MAX_INFLIGHT',
    help: 'offloads in flight at once; the source waits beyond it',
  },
  pipeline: {
    type: 'int',
    min: 1,
    default: 1,
    flag: 'pipeline',
    env: 'CASCADE_PIPELINE',
    help: 'frames in the edge stages at once: 1 gives the lowest latency, 2 more frames/s on a busy source',
  },
  inferenceThread: {
    type: 'choice',
    choices: INFERENCE_THREADS,
    default: 'auto',
    flag: 'inference-thread',
    env: 'CASCADE_INFERENCE_THREAD',
    help: "where the edge stages run: inline (on the event loop's thread), worker (a worker thread), or auto (inline when they take under 1 ms a frame, timed at start)",
  },
  threads: {
    type: 'int',
    min: 0,
    default: 0,
    flag: 'threads',
    env: 'CASCADE_THREADS',
    help: "onnxruntime intra-op threads (0: onnxruntime's choice)",
  },
  backend: {
    type: 'choice',
    choices: BACKENDS,
    default: 'node',
    flag: 'backend',
    env: 'CASCADE_BACKEND',
    help: 'node (onnxruntime-node) or web (onnxruntime-web, WebAssembly)',
  },
  metricsPort: {
    type: 'int',
    min: -1,
    default: 9465,
    flag: 'metrics-port',
    env: 'CASCADE_METRICS_PORT',
    help: 'port of /metrics, /healthz, /readyz, / (the live view) and /live.json; 0: any free port, -1: off',
  },
  metricsHost: {
    type: 'string',
    default: '0.0.0.0',
    flag: 'metrics-host',
    env: 'CASCADE_METRICS_HOST',
    help: 'address they listen on',
  },
  outboxDir: {
    type: 'string',
    flag: 'outbox-dir',
    env: 'CASCADE_OUTBOX_DIR',
    defaultDoc: 'cascade-edge: $XDG_STATE_HOME/cascade/outbox/<id>, else ~/.local/state/...; in code: memory',
    help: 'journal of results the results stream has not acknowledged, kept across restarts; "memory" keeps it in memory only',
  },
  outboxMaxBytes: {
    type: 'bytes',
    default: DEFAULT_OUTBOX.maxBytes,
    flag: 'outbox-max-bytes',
    env: 'CASCADE_OUTBOX_MAX_BYTES',
    help: 'memory the outbox may take (256MiB, 2GiB, ...; about 370 bytes a result); the oldest beyond are dropped and counted',
  },
  outboxMaxCount: {
    type: 'int',
    min: 1,
    flag: 'outbox-max-count',
    env: 'CASCADE_OUTBOX_MAX_COUNT',
    defaultDoc: 'none beyond the size',
    help: 'most results in the outbox, a limit besides the size',
  },
  outboxMaxAgeMs: {
    type: 'int',
    min: 1,
    default: DEFAULT_OUTBOX.maxAgeMs,
    flag: 'outbox-max-age-s',
    flagScale: 1000,
    env: 'CASCADE_OUTBOX_MAX_AGE_S',
    help: 'oldest result kept in the outbox, in seconds',
  },
  controlIntervalMs: {
    type: 'int',
    min: 10,
    default: 1000,
    flag: 'control-interval-ms',
    env: 'CASCADE_CONTROL_INTERVAL_MS',
    help: 'controller tick',
  },
  controlStep: { type: 'number', min: 0, max: 1, default: 0.02, help: 'largest move of a threshold in one tick' },
  minShadowRecords: {
    type: 'int',
    min: 1,
    default: 100,
    help: 'shadow records needed before accuracy moves a threshold',
  },
  shadowTimeoutMs: { type: 'int', min: 1, default: 10_000, help: 'deadline of a shadow request' },
  shadowWindow: { type: 'int', min: 1, default: 400, help: 'shadow records the accuracy estimate keeps (the latest)' },
  fleet: {
    type: 'switch',
    default: true,
    flag: 'fleet',
    env: 'CASCADE_FLEET',
    help: 'on: with NATS, follow the fleet settings (cascade-config: edges.default, edges.<id>) and keep an entry in the registry (cascade-edges); off: flags only',
  },
  connectWaitMs: {
    type: 'int',
    min: 0,
    default: 2000,
    help: 'at start, how long to wait for NATS before taking frames (it keeps connecting after)',
  },
  flushTimeoutMs: {
    type: 'int',
    min: 0,
    default: 5000,
    help: 'on shutdown, how long to wait for the results stream to acknowledge what is pending',
  },
  natsVia: { type: 'string', default: 'the nats option', help: 'where `nats` came from, named in connection errors' },
} as const satisfies OptionSpecs;

/** Options of an edge agent (EDGE_OPTIONS), with its NATS credentials and TLS (replies come to `_INBOX.<id>`). */
export type EdgeOptions = OptionsOf<typeof EDGE_OPTIONS> & { model: string; natsAuth?: NatsAuth };

export type CompiledEdgeOptions = CompiledOptionsOf<typeof EDGE_OPTIONS> & {
  model: string;
  id: string;
  natsAuth: NatsAuth;
  /** The outbox's directory (none: in memory) and limits, from the outbox options. */
  outbox: OutboxOptions & { maxBytes: number; maxAgeMs: number };
};

export const DEFAULT_EDGE_OPTIONS = optionDefaults(EDGE_OPTIONS);

export { EDGE_ID };

/** Fills defaults and checks every option once at start-up; errors name the option. */
export function compileEdgeOptions(o: EdgeOptions): CompiledEdgeOptions {
  if (!o.model) throw new ConfigError('model: a model directory is required');
  const c = compileOptions(EDGE_OPTIONS, { ...o, id: o.id ?? hostname() });
  if (c.stateBits !== 8 && c.encoding !== 'int8')
    throw new ConfigError(`stateBits applies to the int8 encoding, not ${c.encoding}`);
  const id = c.id!;
  const dir = c.outboxDir === 'memory' ? undefined : c.outboxDir;
  return {
    ...c,
    model: o.model,
    id,
    natsAuth: { inboxPrefix: `_INBOX.${id}`, ...o.natsAuth },
    outbox: {
      ...(dir ? { dir } : {}),
      maxBytes: c.outboxMaxBytes,
      maxAgeMs: c.outboxMaxAgeMs,
      ...(c.outboxMaxCount ? { maxCount: c.outboxMaxCount } : {}),
    },
  };
}
