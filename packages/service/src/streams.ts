import { RESULTS_STREAM } from '@cascade/proto';
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

const ms = (x: number) => x * 1_000_000; // JetStream durations are nanoseconds

export interface ResultsStreamOptions {
  /**
   * Copies of a new stream in a JetStream cluster (1, 3 or 5; at most the cluster's size). @default 1. An existing
   * stream is never changed: its count is reported (`ResultsStreamState.replicas`) for the caller to compare.
   */
  replicas?: number;
}

/** What `ensureResultsStream` found or did, and the stream's copies. */
export interface ResultsStreamState {
  created: boolean;
  replicas: number;
}

/**
 * Creates the results stream when it is missing (idempotent); throws when this client may not. It never changes an
 * existing stream's replicas: on nats-server 2.9.10, a stream scaled from 1 to 3 copies in place lost acknowledged
 * results when nodes were killed afterwards (in 5 of 6 runs of the cluster test; 0 of 5 when created with 3), so a
 * change of copies is an operator's decision, made with a JetStream client while every node is up.
 */
export async function ensureResultsStream(
  nc: NatsConnection,
  options: ResultsStreamOptions = {},
): Promise<ResultsStreamState> {
  const jsm = await jetstreamManager(nc);
  const config = {
    name: RESULTS_STREAM.name,
    subjects: [...RESULTS_STREAM.subjects],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_age: ms(RESULTS_STREAM.maxAgeMs),
    max_bytes: RESULTS_STREAM.maxBytes,
    duplicate_window: ms(RESULTS_STREAM.duplicateWindowMs),
    num_replicas: options.replicas ?? 1,
  };
  let info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => undefined);
  if (!info) {
    try {
      await jsm.streams.add(config);
      return { created: true, replicas: config.num_replicas };
    } catch (err) {
      // Another client may have created it a moment ago: go on with that one; otherwise this client may not.
      info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => {
        throw err;
      });
    }
  }
  return { created: false, replicas: info.config.num_replicas };
}
