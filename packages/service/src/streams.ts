import { RESULTS_STREAM } from '@cascade/proto';
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType, type StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

const ns = (ms: number) => ms * 1_000_000; // JetStream durations are nanoseconds

/** The results stream's limits: what it keeps, and how long it remembers message ids to store a retried result once. */
export interface ResultsStreamLimits {
  /** Past this size the oldest results go. */
  maxBytes: number;
  /** Results older than this are deleted. */
  maxAgeMs: number;
  /** How long a result's id is remembered: a result sent again within it is stored once. */
  duplicateWindowMs: number;
}

export const DEFAULT_RESULTS_LIMITS: ResultsStreamLimits = {
  maxBytes: RESULTS_STREAM.maxBytes,
  maxAgeMs: RESULTS_STREAM.maxAgeMs,
  duplicateWindowMs: RESULTS_STREAM.duplicateWindowMs,
};

export interface ResultsStreamOptions {
  /**
   * Copies of a new stream in a JetStream cluster (1, 3 or 5; at most the cluster's size). @default 1. An existing
   * stream's copies are never changed: its count is reported (`ResultsStreamState.replicas`) for the caller to compare.
   */
  replicas?: number;
  /**
   * Limits of a new stream (the defaults where missing); those given are also applied to an existing stream whose
   * limits differ. Without them an existing stream's limits are left as they are.
   */
  limits?: Partial<ResultsStreamLimits>;
  /**
   * Create the stream when it is missing. @default true. An edge passes false: the cloud side owns the stream, and
   * an edge's credentials may not create it; a missing stream then throws ResultsStreamMissing.
   */
  create?: boolean;
}

/** The results stream is not there, and this client was not to create it. */
export class ResultsStreamMissing extends Error {
  constructor() {
    super(`the results stream ${RESULTS_STREAM.name} does not exist yet: cloud workers create it`);
    this.name = 'ResultsStreamMissing';
  }
}

/** What `ensureResultsStream` found or did: whether it created the stream, its copies, its limits now, what changed. */
export interface ResultsStreamState {
  created: boolean;
  replicas: number;
  limits: ResultsStreamLimits;
  /** Limits changed on an existing stream, each as `name: old -> new`. */
  updated: string[];
}

function limitsOf(info: StreamInfo): ResultsStreamLimits {
  const c = info.config;
  return { maxBytes: c.max_bytes, maxAgeMs: c.max_age / 1e6, duplicateWindowMs: (c.duplicate_window ?? 0) / 1e6 };
}

/**
 * Creates the results stream when it is missing (idempotent), or brings an existing stream's limits to those given;
 * throws when this client may not. Direct gets are on, so that an edge can read its own last stored result (its
 * outbox checks what the stream already has before sending a result again). It never changes an existing stream's
 * replicas: on nats-server 2.9.10, a stream scaled from 1 to 3 copies in place lost acknowledged results when nodes
 * were killed afterwards (in 5 of 6 runs of the cluster test; 0 of 5 when created with 3), so a change of copies is
 * an operator's decision, made with a JetStream client while every node is up.
 */
export async function ensureResultsStream(
  nc: NatsConnection,
  options: ResultsStreamOptions = {},
): Promise<ResultsStreamState> {
  const jsm = await jetstreamManager(nc, { checkAPI: false }); // no $JS.API.INFO: an edge may not ask it
  const limits = { ...DEFAULT_RESULTS_LIMITS, ...options.limits };
  const config = {
    name: RESULTS_STREAM.name,
    subjects: [...RESULTS_STREAM.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: ns(limits.maxAgeMs),
    max_bytes: limits.maxBytes,
    duplicate_window: ns(limits.duplicateWindowMs),
    allow_direct: true,
    num_replicas: options.replicas ?? 1,
  };
  let info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => undefined);
  if (!info && options.create === false) throw new ResultsStreamMissing();
  if (!info) {
    try {
      await jsm.streams.add(config);
      return { created: true, replicas: config.num_replicas, limits, updated: [] };
    } catch (err) {
      // Another client may have created it a moment ago: go on with that one; otherwise this client may not.
      info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => {
        throw err;
      });
    }
  }
  const now = limitsOf(info);
  const updated: string[] = [];
  const wanted = options.limits ?? {};
  for (const key of ['maxBytes', 'maxAgeMs', 'duplicateWindowMs'] as const) {
    const want = wanted[key];
    if (want !== undefined && want !== now[key]) updated.push(`${key}: ${now[key]} -> ${want}`);
  }
  if (updated.length > 0 || !info.config.allow_direct) {
    const next = { ...now, ...wanted };
    info = await jsm.streams.update(RESULTS_STREAM.name, {
      max_bytes: next.maxBytes,
      max_age: ns(next.maxAgeMs),
      duplicate_window: ns(next.duplicateWindowMs),
      allow_direct: true,
    });
  }
  return { created: false, replicas: info.config.num_replicas, limits: limitsOf(info), updated };
}

/** What the results stream holds now against its limits (for metrics and alerts). */
export interface ResultsStreamUse {
  bytes: number;
  messages: number;
  maxBytes: number;
  maxAgeMs: number;
  /** Age of the oldest result kept, in ms (0 when empty). */
  oldestAgeMs: number;
}

/** The results stream's use now, or undefined when it is missing or this client may not read it. */
export async function resultsStreamUse(nc: NatsConnection): Promise<ResultsStreamUse | undefined> {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => undefined);
  if (!info) return undefined;
  const first = info.state.messages > 0 ? Date.parse(info.state.first_ts) : Date.now();
  const { maxBytes, maxAgeMs } = limitsOf(info);
  return {
    bytes: info.state.bytes,
    messages: info.state.messages,
    maxBytes,
    maxAgeMs,
    oldestAgeMs: Math.max(0, Date.now() - first),
  };
}
