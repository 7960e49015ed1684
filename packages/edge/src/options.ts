import { ConfigError, EDGE_ID, ENCODINGS, type Encoding } from '@cascade/proto';
import { COMPRESSIONS, type CompressionChoice } from '@cascade/proto/compress';
import { BACKENDS, INFERENCE_THREADS, type Backend, type InferenceThread } from '@cascade/runtime';
import { type NatsAuth } from '@cascade/service';
import { hostname } from 'node:os';
import { DEFAULT_OUTBOX, type OutboxOptions } from './outbox.js';

/**
 * How hard frames travel: image + carried state (`state`), the image alone with the cloud redoing the edge stages
 * (`image`), or per frame, whichever costs less (`auto`: bytes against cloud compute, see `bytesWeight`).
 */
export const OFFLOAD_MODES = ['state', 'image', 'auto'] as const;
export type OffloadMode = (typeof OFFLOAD_MODES)[number];

/** Options of an edge agent. */
export interface EdgeOptions {
  /**
   * Model directory, or `NAME@VERSION` from the model registry in NATS (cached in `modelCache`; the cache serves
   * when NATS cannot be reached).
   */
  model: string;
  /** Where registry models are cached. @default $XDG_CACHE_HOME/cascade/models, else ~/.cache/cascade/models */
  modelCache?: string;
  /** NATS server URL(s); without it every hard frame falls back to its best local exit. */
  nats?: string;
  /** Edge id: results subject cascade.v1.results.<id>. @default `<hostname>` */
  id?: string;
  /** Stages run on the edge. @default the manifest's default_split, else 1 */
  split?: number;
  /** Operating point from the manifest. @default the manifest's default */
  operatingPoint?: string;
  /** Thresholds, one per exit, overriding the operating point. */
  thresholds?: number[];
  /** @default 'state' */
  mode?: OffloadMode;
  /** `auto` mode: cost of a kilobyte on the link, against `computeWeight`. @default 1 */
  bytesWeight?: number;
  /** `auto` mode: cost of a million MACs in the cloud. @default 0.1 */
  computeWeight?: number;
  /** Encoding of the carried state. @default 'int8' */
  encoding?: Encoding;
  /**
   * int8 only: quantisation levels per channel, 2^stateBits, 2 to 8. Fewer bits pack smaller (the tensor on the wire
   * is still int8, so every worker decodes it) and cost accuracy: measure it on the model (`scripts/bench wire`).
   * @default 8
   */
  stateBits?: number;
  /**
   * Packing of the offloaded tensors on the wire: `brotli` (lossless: images with a row delta, state plainly; workers
   * must understand it, as every cascade-cloud since it was added does) or `none`. @default 'brotli'
   */
  compression?: CompressionChoice;
  /** Offload deadline in ms; past it the frame falls back. @default 1000 */
  timeoutMs?: number;
  /** Offloads in flight at once; the source waits when they are all busy. @default 16 */
  maxInflight?: number;
  /** Frames in the edge stages at once: 1 gives the lowest latency, 2 more frames/s on a busy source. @default 1 */
  pipeline?: number;
  /**
   * Where the edge stages run: `inline` on the event loop's thread (no hand-off; each stage holds the loop while it
   * computes), `worker` on a worker thread, or `auto`: inline when the edge stages take under 1 ms a frame (timed at
   * start), else a worker thread. @default 'auto'
   */
  inferenceThread?: InferenceThread;
  /** onnxruntime intra-op threads (0: onnxruntime's choice). @default 0 */
  threads?: number;
  /** `node` (onnxruntime-node) or `web` (onnxruntime-web, WebAssembly). @default 'node' */
  backend?: Backend;
  /** Port of GET /metrics; 0 picks a free port, -1 turns it off. @default 9465 */
  metricsPort?: number;
  /** Address /metrics listens on. @default '0.0.0.0' */
  metricsHost?: string;
  /** NATS credentials and TLS; replies come to `_INBOX.<id>`. @default none */
  natsAuth?: NatsAuth;
  /** Where `nats` came from, named in connection errors. @default 'the nats option' */
  natsVia?: string;
  /**
   * The outbox of results not yet acknowledged by the results stream: a directory for its journal (kept across
   * restarts; without one it is in memory) and its limits. @default in memory, 512 MiB, 24 h
   */
  outbox?: OutboxOptions;
  /** At start, how long to wait for NATS before taking frames (it keeps connecting after). @default 2000 */
  connectWaitMs?: number;
  /** On close, how long to wait for the results stream to acknowledge what is pending. @default 5000 */
  flushTimeoutMs?: number;
  /**
   * Share of frames also finished to the last exit, to measure how often the edge's exits agree with it: a frame
   * that exited is sent again as a low-priority shadow request, an offloaded one asks the cloud for every exit.
   * 0 turns it off. @default 0.02
   */
  shadowRate?: number;
  /** Deadline of a shadow request. @default 10000 */
  shadowTimeoutMs?: number;
  /** Shadow records the accuracy estimate keeps (the most recent). @default 400 */
  shadowWindow?: number;
  /**
   * The threshold controller: keeps the estimated accuracy loss within the operating point's budget at the lowest
   * offload rate, sheds load when the cloud is under pressure, keeps offload bytes under `bandwidthBytesPerS`.
   * @default false
   */
  controller?: boolean;
  /** Offload latency (p95 over a control tick) above which the cloud counts as under pressure; 0: not watched. @default 500 */
  latencyTargetMs?: number;
  /** Offload bytes per second the edge may send (the controller keeps under it); 0: no limit. @default 0 */
  bandwidthBytesPerS?: number;
  /** Control tick. @default 1000 */
  controlIntervalMs?: number;
  /** Largest move of a threshold in one tick. @default 0.02 */
  controlStep?: number;
  /** Shadow records needed before accuracy moves a threshold. @default 100 */
  minShadowRecords?: number;
  /** Accuracy the controller may give up against the last exit; default: the operating point's max_drop, else 0.005. */
  accuracyBudget?: number;
  /**
   * With NATS: watch the fleet configuration (`cascade-config` bucket, keys `edges.default` and `edges.<id>`) and
   * keep this edge's entry in the registry (`cascade-edges`). @default true
   */
  fleet?: boolean;
}

export interface CompiledEdgeOptions extends Required<
  Omit<
    EdgeOptions,
    'nats' | 'split' | 'operatingPoint' | 'thresholds' | 'natsAuth' | 'outbox' | 'accuracyBudget' | 'modelCache'
  >
> {
  modelCache?: string;
  accuracyBudget?: number;
  natsAuth: NatsAuth;
  outbox: OutboxOptions & { maxBytes: number; maxAgeMs: number };
  nats?: string;
  split?: number;
  operatingPoint?: string;
  thresholds?: number[];
}

export const DEFAULT_EDGE_OPTIONS = {
  mode: 'state',
  encoding: 'int8',
  stateBits: 8,
  compression: 'brotli',
  timeoutMs: 1000,
  maxInflight: 16,
  pipeline: 1,
  inferenceThread: 'auto',
  threads: 0,
  backend: 'node',
  metricsPort: 9465,
  metricsHost: '0.0.0.0',
  natsVia: 'the nats option',
  flushTimeoutMs: 5000,
  connectWaitMs: 2000,
  shadowRate: 0.02,
  shadowTimeoutMs: 10_000,
  shadowWindow: 400,
  controller: false,
  latencyTargetMs: 500,
  bandwidthBytesPerS: 0,
  controlIntervalMs: 1000,
  controlStep: 0.02,
  minShadowRecords: 100,
  fleet: true,
  bytesWeight: 1,
  computeWeight: 0.1,
} as const;

export { EDGE_ID };

/** `value` when it is one of `allowed`; otherwise a ConfigError naming the field and the choices. */
function oneOf<T extends string>(name: string, value: T, allowed: readonly T[]): T {
  if (!allowed.includes(value))
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return value;
}

const D = DEFAULT_EDGE_OPTIONS;

/** `v` when it is a number in [0, 1]; otherwise a ConfigError naming the field. */
export function share(name: string, v: number): number {
  if (typeof v !== 'number' || !(v >= 0 && v <= 1))
    throw new ConfigError(`${name} must be a number from 0 to 1, got ${v}`);
  return v;
}

/** `v` when it is a finite number >= 0; otherwise a ConfigError naming the field. */
export function nonNegative(name: string, v: number): number {
  if (typeof v !== 'number' || !(v >= 0 && Number.isFinite(v)))
    throw new ConfigError(`${name} must be a number >= 0, got ${v}`);
  return v;
}

/** Fills defaults and validates once at start-up; errors name the field. */
export function compileEdgeOptions(o: EdgeOptions): CompiledEdgeOptions {
  if (!o.model) throw new ConfigError('model: a model directory is required');
  const mode = oneOf('mode', o.mode ?? DEFAULT_EDGE_OPTIONS.mode, OFFLOAD_MODES);
  const inferenceThread = oneOf(
    'inferenceThread',
    o.inferenceThread ?? DEFAULT_EDGE_OPTIONS.inferenceThread,
    INFERENCE_THREADS,
  );
  const compression = oneOf('compression', o.compression ?? DEFAULT_EDGE_OPTIONS.compression, COMPRESSIONS);
  const encoding = oneOf('encoding', o.encoding ?? DEFAULT_EDGE_OPTIONS.encoding, ENCODINGS);
  const int = (name: string, v: number, min: number) => {
    if (!Number.isInteger(v) || v < min) throw new ConfigError(`${name} must be an integer >= ${min}, got ${v}`);
    return v;
  };
  const stateBits = o.stateBits ?? DEFAULT_EDGE_OPTIONS.stateBits;
  if (!Number.isInteger(stateBits) || stateBits < 2 || stateBits > 8)
    throw new ConfigError(`stateBits must be an integer from 2 to 8, got ${stateBits}`);
  if (stateBits !== 8 && encoding !== 'int8')
    throw new ConfigError(`stateBits applies to the int8 encoding, not ${encoding}`);
  const backend = oneOf('backend', o.backend ?? DEFAULT_EDGE_OPTIONS.backend, BACKENDS);
  if (o.thresholds?.some((t) => !Number.isFinite(t)))
    throw new ConfigError(`thresholds must be numbers, got ${o.thresholds.join(',')}`);
  const id = o.id ?? hostname();
  if (!EDGE_ID.test(id))
    throw new ConfigError(
      `id "${id}" must be letters, digits, "-" or "_", in dot-separated parts such as site-a.cam-1 (it ends NATS subjects)`,
    );
  return {
    model: o.model,
    ...(o.modelCache ? { modelCache: o.modelCache } : {}),
    ...(o.nats ? { nats: o.nats } : {}),
    id,
    natsAuth: { inboxPrefix: `_INBOX.${id}`, ...o.natsAuth },
    ...(o.split !== undefined ? { split: int('split', o.split, 1) } : {}),
    ...(o.operatingPoint ? { operatingPoint: o.operatingPoint } : {}),
    ...(o.thresholds ? { thresholds: o.thresholds } : {}),
    mode,
    encoding,
    stateBits,
    compression,
    timeoutMs: int('timeoutMs', o.timeoutMs ?? DEFAULT_EDGE_OPTIONS.timeoutMs, 1),
    maxInflight: int('maxInflight', o.maxInflight ?? DEFAULT_EDGE_OPTIONS.maxInflight, 1),
    pipeline: int('pipeline', o.pipeline ?? DEFAULT_EDGE_OPTIONS.pipeline, 1),
    inferenceThread,
    threads: int('threads', o.threads ?? DEFAULT_EDGE_OPTIONS.threads, 0),
    backend,
    metricsPort: int('metricsPort', o.metricsPort ?? DEFAULT_EDGE_OPTIONS.metricsPort, -1),
    metricsHost: o.metricsHost ?? DEFAULT_EDGE_OPTIONS.metricsHost,
    natsVia: o.natsVia ?? DEFAULT_EDGE_OPTIONS.natsVia,
    outbox: {
      ...(o.outbox?.dir ? { dir: o.outbox.dir } : {}),
      maxBytes: int('outbox.maxBytes', o.outbox?.maxBytes ?? DEFAULT_OUTBOX.maxBytes, 1),
      ...(o.outbox?.maxCount ? { maxCount: int('outbox.maxCount', o.outbox.maxCount, 1) } : {}),
      maxAgeMs: int('outbox.maxAgeMs', o.outbox?.maxAgeMs ?? DEFAULT_OUTBOX.maxAgeMs, 1),
      ...(o.outbox?.segmentRecords ? { segmentRecords: int('outbox.segmentRecords', o.outbox.segmentRecords, 1) } : {}),
    },
    flushTimeoutMs: int('flushTimeoutMs', o.flushTimeoutMs ?? DEFAULT_EDGE_OPTIONS.flushTimeoutMs, 0),
    connectWaitMs: int('connectWaitMs', o.connectWaitMs ?? DEFAULT_EDGE_OPTIONS.connectWaitMs, 0),
    shadowRate: share('shadowRate', o.shadowRate ?? D.shadowRate),
    shadowTimeoutMs: int('shadowTimeoutMs', o.shadowTimeoutMs ?? D.shadowTimeoutMs, 1),
    shadowWindow: int('shadowWindow', o.shadowWindow ?? D.shadowWindow, 1),
    controller: o.controller ?? D.controller,
    latencyTargetMs: nonNegative('latencyTargetMs', o.latencyTargetMs ?? D.latencyTargetMs),
    bandwidthBytesPerS: nonNegative('bandwidthBytesPerS', o.bandwidthBytesPerS ?? D.bandwidthBytesPerS),
    controlIntervalMs: int('controlIntervalMs', o.controlIntervalMs ?? D.controlIntervalMs, 10),
    controlStep: share('controlStep', o.controlStep ?? D.controlStep),
    minShadowRecords: int('minShadowRecords', o.minShadowRecords ?? D.minShadowRecords, 1),
    fleet: o.fleet ?? D.fleet,
    bytesWeight: nonNegative('bytesWeight', o.bytesWeight ?? D.bytesWeight),
    computeWeight: nonNegative('computeWeight', o.computeWeight ?? D.computeWeight),
    ...(o.accuracyBudget !== undefined ? { accuracyBudget: share('accuracyBudget', o.accuracyBudget) } : {}),
  };
}
