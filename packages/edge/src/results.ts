import { CascadeError, ERROR_CODES, resultMessageId, RESULTS_STREAM, subjects, v1 } from '@cascade/proto';
import type { EdgeResult } from './frame.js';
import { ensureResultsStream, type Log, type NatsLink } from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
} from '@nats-io/jetstream';
import type { Outbox } from './outbox.js';

/** Results published at once before waiting for their acknowledgements. */
export const PUBLISH_WINDOW = 128;
/** How long one acknowledgement may take. */
export const ACK_TIMEOUT_MS = 5000;
/** The client's words when no server answered for the stream (HTTP-like 503 "no responders"). */
const NO_STREAM = /jetstream is not enabled|no responders|503/i;
const NO_STREAM_HINT =
  'no server answered for the results stream: a cluster electing a new stream leader, the link from a site to the ' +
  'cloud down, or the stream missing; results wait in the outbox';
/** Pause after a failed publish before trying again (while connected). */
export const RETRY_MS = 1000;

/**
 * Delivers results to the results stream at least once and, through de-duplication ids, stored exactly once: every
 * result goes into the outbox first, and leaves it only when the stream has acknowledged it. While NATS is away the
 * outbox fills (bounded); when it is back the backlog goes out in order, then new results follow.
 */
export class ResultsPublisher {
  private js: JetStreamClient | undefined;
  private pumping = false;
  private wake: (() => void) | undefined;
  private closed = false;
  private failures = 0;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly outbox: Outbox,
    private readonly link: NatsLink | undefined,
    private readonly log: Log,
    private readonly onDelivered: (n: number, duplicates: number) => void = () => undefined,
  ) {
    link?.onConnect((nc) => {
      this.js = jetstream(nc, { timeout: ACK_TIMEOUT_MS });
      ensureResultsStream(nc).then(
        () => this.kick(),
        (err: Error) => this.log('results_stream_unchecked', { stream: RESULTS_STREAM.name, error: err.message }),
      );
      this.kick();
    });
  }

  /** Results waiting for the stream. */
  get pending(): number {
    return this.outbox.size;
  }

  /** Queues one result (journalled first when the outbox has a directory) and sends it when it can. */
  publish(id: string, subject: string, data: Uint8Array): void {
    this.outbox.append({ id, subject, data, t: Date.now() });
    this.kick();
  }

  /** Resolves true once every queued result is acknowledged, false if `timeoutMs` passes first. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.outbox.size === 0) return true;
    this.kick();
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Stops sending; what is not acknowledged stays in the outbox (on disk, when it has a directory). */
  close(): void {
    this.closed = true;
    this.wake?.();
    this.outbox.close();
  }

  private kick(): void {
    if (this.wake) this.wake();
    else if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.closed && this.outbox.size > 0) {
        const js = this.js;
        if (!js || !this.link?.connected) {
          await this.sleep(RETRY_MS);
          continue;
        }
        const batch = this.outbox.head(PUBLISH_WINDOW);
        if (batch.length === 0) break;
        // Sent back to back on one connection, they reach the stream in order; acknowledgements come back together.
        const acks = await Promise.allSettled(
          batch.map((e) => js.publish(e.subject, e.data, { msgID: e.id, timeout: ACK_TIMEOUT_MS })),
        );
        const delivered: string[] = [];
        let duplicates = 0;
        let error: Error | undefined;
        acks.forEach((a, i) => {
          if (a.status === 'fulfilled') {
            delivered.push(batch[i]!.id);
            if (a.value.duplicate) duplicates++;
          } else {
            error ??= a.reason as Error;
          }
        });
        this.outbox.settle(delivered);
        if (delivered.length) this.onDelivered(delivered.length, duplicates);
        if (error) {
          if (this.failures++ % 30 === 0) {
            this.log('results_publish_failed', {
              stream: RESULTS_STREAM.name,
              pending: this.outbox.size,
              error: error.message,
              ...(NO_STREAM.test(error.message) ? { hint: NO_STREAM_HINT } : {}),
            });
          }
          await this.sleep(RETRY_MS);
        } else if (this.failures > 0) {
          this.log('results_publish_recovered', { pending: this.outbox.size });
          this.failures = 0;
        }
      }
    } finally {
      this.pumping = false;
      if (this.outbox.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /** Waits `ms`, or less when kick() or close() wakes the pump. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}

export type FrameResult = ReturnType<typeof v1.FrameResult.decode>;

/** A FrameResult as one JSON object with the schema's field names. */
export function frameResultJson(r: FrameResult): Record<string, unknown> {
  return {
    frame_id: r.frameId,
    edge_id: r.edgeId,
    run_id: r.runId,
    sequence: Number(r.sequence),
    class_index: r.classIndex,
    class_name: r.className,
    confidence: r.confidence,
    exit: r.exit,
    tier: r.tier,
    outcome: r.outcome,
    latency_ms: r.latencyMs,
    offload_bytes: r.offloadBytes,
    model_version: r.modelVersion,
    captured_unix_ms: Number(r.capturedUnixMs),
    ...(r.error ? { error: r.error } : {}),
  };
}

/** Counts over results read from the stream. */
export interface ResultStats {
  messages: number;
  /** Distinct frames (edge, run, sequence). */
  unique: number;
  duplicates: number;
  byEdge: Record<string, Record<string, number>>;
}

/** How long a read waits, by default, while results are pending but none arrive, before it fails. */
export const READ_STALL_MS = 30_000;

/**
 * Reads the results stream: ordered (every result since the start) or through a durable consumer. Without `follow`
 * it returns once it has every result the stream held for the filter (the consumer's pending count reaches 0), not
 * after a quiet spell: a cluster electing a new stream leader may pause delivery for seconds, and stopping then would
 * miss results. A pause longer than `stallMs` with results still pending is an error.
 */
export async function readResults(
  nc: NatsConnection,
  o: {
    edge?: string;
    durable?: string;
    follow?: boolean;
    /** Without `follow`: longest wait with results pending and none arriving. @default READ_STALL_MS */
    stallMs?: number;
    onUndecodable?: (subject: string, err: Error) => void;
  },
  onResult: (r: FrameResult, subject: string) => void,
): Promise<number> {
  await ensureResultsStream(nc);
  const js = jetstream(nc);
  const filter = `cascade.v1.results.${o.edge ?? '>'}`;
  let consumer: Consumer;
  if (o.durable) {
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(RESULTS_STREAM.name, {
      durable_name: o.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: filter,
    });
    consumer = await js.consumers.get(RESULTS_STREAM.name, o.durable);
  } else {
    consumer = await js.consumers.get(RESULTS_STREAM.name, { filter_subjects: filter });
  }
  let n = 0;
  let pending = (await consumer.info()).num_pending;
  let stalledSince: number | undefined;
  for (;;) {
    if (pending === 0 && !o.follow) return n;
    let got = 0;
    const batch = await consumer.fetch({ max_messages: 512, expires: 1000 });
    for await (const m of batch) {
      got++;
      pending = m.info.pending;
      let r: FrameResult | undefined;
      try {
        r = v1.FrameResult.decode(m.data);
      } catch (err) {
        o.onUndecodable?.(m.subject, err as Error); // not a FrameResult: skipped, never fatal
      }
      if (r) onResult(r, m.subject);
      if (o.durable) m.ack();
    }
    n += got;
    if (got > 0 || o.follow) {
      stalledSince = undefined;
      continue;
    }
    stalledSince ??= performance.now();
    const stallMs = o.stallMs ?? READ_STALL_MS;
    if (performance.now() - stalledSince > stallMs) {
      throw new CascadeError(
        ERROR_CODES.NATS,
        `the results stream stopped delivering for ${stallMs} ms with ${pending} results still pending`,
      );
    }
  }
}

/** A result as the results stream keeps it: its de-duplication id, subject and FrameResult bytes. */
export function toFrameResult(
  r: EdgeResult,
  runId: string,
  capturedUnixMs: number,
): { id: string; subject: string; data: Uint8Array } {
  const data = v1.FrameResult.encode({
    frameId: r.frame,
    edgeId: r.edge,
    runId,
    sequence: r.sequence,
    classIndex: r.class,
    className: r.class_name,
    confidence: r.confidence,
    exit: r.exit,
    tier: r.tier,
    outcome: r.outcome,
    latencyMs: r.latency_ms,
    offloadBytes: r.offload_bytes,
    modelVersion: r.model_version,
    capturedUnixMs,
    error: r.error ?? r.fallback_reason ?? '',
  }).finish();
  return { id: resultMessageId(r.edge, runId, r.sequence), subject: subjects.results(r.edge), data };
}
