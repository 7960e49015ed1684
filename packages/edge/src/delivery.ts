// Results to the results stream, at least once and stored once: what the Node edge and the browser edge share
// (browser-safe: no Node modules). The Node edge adds a journal on disk (outbox.ts) and its healing connection
// (results.ts); the browser keeps its queue in memory.
import { resultMessageId, RESULTS_STREAM, subjects, v1 } from '@cascade/proto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { EdgeResult } from './frame.js';

export type { EdgeResult } from './frame.js';

/** One result waiting for the results stream's acknowledgement. */
export interface OutboxEntry {
  /** De-duplication id (JetStream `Nats-Msg-Id`). */
  id: string;
  subject: string;
  data: Uint8Array;
  /** When it was written (ms since the epoch); past `maxAgeMs` it is dropped. */
  t: number;
}

/** What the pump needs of an outbox: the oldest entries, and a way to remove those the stream acknowledged. */
export interface ResultQueue {
  readonly size: number;
  append(e: OutboxEntry): void;
  head(n: number): OutboxEntry[];
  settle(ids: string[]): void;
  close(): void;
}

/** Results published at once before waiting for their acknowledgements. */
export const PUBLISH_WINDOW = 128;
/** How long one acknowledgement may take. */
export const ACK_TIMEOUT_MS = 5000;
/** Pause after a failed publish before trying again (while connected). */
export const RETRY_MS = 1000;
/** The client's words when no server answered for the stream (HTTP-like 503 "no responders"). */
const NO_STREAM = /jetstream is not enabled|no responders|503/i;
const NO_STREAM_HINT =
  'no server answered for the results stream: a cluster electing a new stream leader, the link from a site to the ' +
  'cloud down, or the stream missing; results wait in the outbox';

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

/** An outbox in memory, bounded: past `maxCount` the oldest results are dropped (and counted). */
export class MemoryOutbox implements ResultQueue {
  private queue: OutboxEntry[] = [];
  dropped = 0;

  constructor(private readonly maxCount = 10_000) {}

  get size(): number {
    return this.queue.length;
  }

  append(e: OutboxEntry): void {
    this.queue.push(e);
    if (this.queue.length > this.maxCount)
      this.dropped += this.queue.splice(0, this.queue.length - this.maxCount).length;
  }

  head(n: number): OutboxEntry[] {
    return this.queue.slice(0, n);
  }

  settle(ids: string[]): void {
    const done = new Set(ids);
    this.queue = this.queue.filter((e) => !done.has(e.id));
  }

  close(): void {
    this.queue = [];
  }
}

/**
 * Sends what an outbox holds to the results stream, in order, a window at a time; an entry leaves the outbox only
 * once the stream has acknowledged it (the de-duplication id makes a second send harmless). While there is no
 * client or no connection it waits, and tries again a second after a failure.
 */
export class ResultsPump {
  private pumping = false;
  private wake: (() => void) | undefined;
  private closed = false;
  private failures = 0;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly outbox: ResultQueue,
    private readonly client: () => JetStreamClient | undefined,
    private readonly connected: () => boolean,
    private readonly log: (event: string, fields: Record<string, unknown>) => void,
    private readonly onDelivered: (n: number, duplicates: number) => void = () => undefined,
  ) {}

  /** Results waiting for the stream. */
  get pending(): number {
    return this.outbox.size;
  }

  /** Queues one result and sends it when it can. */
  publish(id: string, subject: string, data: Uint8Array): void {
    this.outbox.append({ id, subject, data, t: Date.now() });
    this.kick();
  }

  /** Resolves true once every queued result is acknowledged, false if `timeoutMs` passes first. */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.outbox.size === 0) return true;
    this.kick();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = await Promise.race([
      new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true))),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** Stops sending; what is not acknowledged stays in the outbox. */
  close(): void {
    this.closed = true;
    this.wake?.();
    this.outbox.close();
  }

  /** Sends now if it was waiting (a new result, a new connection). */
  kick(): void {
    if (this.wake) this.wake();
    else if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.closed && this.outbox.size > 0) {
        const js = this.client();
        if (!js || !this.connected()) {
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
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
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
