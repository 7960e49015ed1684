// Results to the results stream, at least once and stored once: what the Node edge and the browser edge share
// (browser-safe: no Node modules). The Node edge adds a journal on disk (outbox.ts) and its healing connection
// (results.ts); the browser keeps its queue in memory.
import { resultMessageId, RESULTS_STREAM, subjects, v1 } from '@cascade/proto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { EdgeResult } from './path.js';

export type { EdgeResult } from './path.js';

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
    region: r.region ?? '',
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
 * The id (`Nats-Msg-Id`) of the last result the results stream holds on a subject, null when it holds none; throws
 * when it cannot tell (no connection, no permission).
 */
export type LastStored = (subject: string) => Promise<string | null>;

/**
 * Sends what an outbox holds to the results stream, in order, a window at a time; an entry leaves the outbox only
 * once the stream has acknowledged it. While there is no client or no connection it waits, and tries again a second
 * after a failure.
 *
 * Stored once, however long NATS was away: a result whose acknowledgement was lost (the link cut, the edge killed)
 * may be stored although it is still in the outbox. Sent again within the stream's de-duplication window it is stored
 * once; after the window it would be stored twice. So before sending again after a failure or a restart, the pump
 * asks the stream for the last result it holds on each subject of the window (`lastStored`): the pump sends from the
 * head of the outbox, in order, on one connection, and the stream stores in that order, so every entry of that
 * subject up to that result was stored too and is settled without a resend. An entry refused outright (no responders)
 * is known not stored and is sent again. Without `lastStored`, or when the stream cannot be asked, the window alone
 * de-duplicates (logged once per cause).
 */
export class ResultsPump {
  private pumping = false;
  private wake: (() => void) | undefined;
  private closed = false;
  private failures = 0;
  private readonly idleWaiters: (() => void)[] = [];
  /** Whether entries of the window may have been stored without an acknowledgement. */
  private unsure: boolean;
  /** Entries whose last send was refused outright: not stored. */
  private refused = new Set<string>();
  private checkFailureSaid = '';

  constructor(
    private readonly outbox: ResultQueue,
    private readonly client: () => JetStreamClient | undefined,
    private readonly connected: () => boolean,
    private readonly log: (event: string, fields: Record<string, unknown>) => void,
    private readonly onDelivered: (n: number, duplicates: number) => void = () => undefined,
    private readonly lastStored?: LastStored,
  ) {
    this.unsure = outbox.size > 0; // recovered from a journal: sent before the restart, perhaps stored
  }

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
        if (this.unsure && !(await this.settleStored())) {
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
        this.refused = new Set(); // what the last send of the window refused: every unsettled entry is in it
        acks.forEach((a, i) => {
          const id = batch[i]!.id;
          if (a.status === 'fulfilled') {
            delivered.push(id);
            if (a.value.duplicate) duplicates++;
          } else {
            error ??= a.reason as Error;
            if (NO_STREAM.test((a.reason as Error).message)) this.refused.add(id); // nobody took it
          }
        });
        this.outbox.settle(delivered);
        if (delivered.length) this.onDelivered(delivered.length, duplicates);
        if (error) {
          this.unsure = true;
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

  /**
   * Settles the entries of the window that the stream already holds (see the class); true when the window may be
   * sent, false to try again later (no connection).
   */
  private async settleStored(): Promise<boolean> {
    if (!this.lastStored) {
      this.unsure = false;
      return true;
    }
    const window = this.outbox.head(PUBLISH_WINDOW);
    const stored: string[] = [];
    try {
      for (const subject of new Set(window.map((e) => e.subject))) {
        const last = await this.lastStored(subject);
        const k = last === null ? -1 : window.findIndex((e) => e.id === last);
        for (let i = 0; i <= k; i++)
          if (window[i]!.subject === subject && !this.refused.has(window[i]!.id)) stored.push(window[i]!.id);
      }
    } catch (err) {
      if (!this.connected()) return false;
      // The stream cannot be asked (no permission, no stream yet, no leader): this round relies on the window.
      const error = (err as Error).message;
      if (error !== this.checkFailureSaid)
        this.log('results_check_failed', {
          stream: RESULTS_STREAM.name,
          error,
          hint:
            "results are sent again relying on the stream's de-duplication window alone; the edge must be allowed to " +
            `read its own last result ($JS.API.DIRECT.GET.${RESULTS_STREAM.name}.<its results subject>)`,
        });
      this.checkFailureSaid = error;
      this.unsure = false;
      return true;
    }
    this.unsure = false;
    if (stored.length > 0) {
      this.outbox.settle(stored);
      this.onDelivered(stored.length, stored.length);
      this.log('results_already_stored', { count: stored.length, pending: this.outbox.size });
    }
    return true;
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
