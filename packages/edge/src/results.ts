import { CascadeError, ERROR_CODES, RESULTS_STREAM, v1 } from '@cascade/proto';
import { ACK_TIMEOUT_MS, ResultsPump } from './delivery.js';
import { ensureResultsStream, ResultsStreamMissing, type Log, type NatsLink } from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
} from '@nats-io/jetstream';
import type { Outbox } from './outbox.js';

/**
 * Delivers results to the results stream at least once and, through de-duplication ids, stored exactly once: every
 * result goes into the outbox first, and leaves it only when the stream has acknowledged it (ResultsPump, shared with
 * the browser edge). While NATS is away the outbox fills (bounded); when it is back the backlog goes out in order,
 * then new results follow.
 */
export class ResultsPublisher {
  private js: JetStreamClient | undefined;
  private jsm: Promise<JetStreamManager> | undefined;
  private readonly pump: ResultsPump;

  constructor(
    outbox: Outbox,
    private readonly link: NatsLink | undefined,
    log: Log,
    onDelivered: (n: number, duplicates: number) => void = () => undefined,
  ) {
    this.pump = new ResultsPump(
      outbox,
      () => this.js,
      () => this.link?.connected ?? false,
      log,
      onDelivered,
      async (subject) => {
        const jsm = await (this.jsm ??= jetstreamManager(this.link!.nc!, { checkAPI: false, timeout: ACK_TIMEOUT_MS }));
        const m = await jsm.direct.getMessage(RESULTS_STREAM.name, { last_by_subj: subject });
        return m ? (m.header.get('Nats-Msg-Id') ?? '') : null;
      },
    );
    link?.onConnect((nc) => {
      this.js = jetstream(nc, { timeout: ACK_TIMEOUT_MS });
      this.jsm = undefined;
      // The cloud side owns the stream: the edge only looks for it (its credentials may not create it).
      ensureResultsStream(nc, { create: false }).then(
        () => this.pump.kick(),
        (err: Error) =>
          log(err instanceof ResultsStreamMissing ? 'results_stream_missing' : 'results_stream_unchecked', {
            stream: RESULTS_STREAM.name,
            error: err.message,
            then: 'results wait in the outbox until the stream is there',
          }),
      );
      this.pump.kick();
    });
  }

  /** Results waiting for the stream. */
  get pending(): number {
    return this.pump.pending;
  }

  /** Queues one result (journalled first when the outbox has a directory) and sends it when it can. */
  publish(id: string, subject: string, data: Uint8Array): void {
    this.pump.publish(id, subject, data);
  }

  /** Resolves true once every queued result is acknowledged, false if `timeoutMs` passes first. */
  flush(timeoutMs: number): Promise<boolean> {
    return this.pump.flush(timeoutMs);
  }

  /** Stops sending; what is not acknowledged stays in the outbox (on disk, when it has a directory). */
  close(): void {
    this.pump.close();
  }
}

export type FrameResult = ReturnType<typeof v1.FrameResult.decode>;

/** A FrameResult as one JSON object with the schema's field names. */
export function frameResultJson(r: FrameResult): Record<string, unknown> {
  return {
    frame_id: r.frameId,
    edge_id: r.edgeId,
    ...(r.region ? { region: r.region } : {}),
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
