import { RESULTS_STREAM } from '@cascade/proto';
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

const ms = (x: number) => x * 1_000_000; // JetStream durations are nanoseconds

export interface ResultsStreamOptions {
  /**
   * Copies of the stream in a JetStream cluster (1, 3 or 5; at most the cluster's size). When given and the stream
   * exists with another count, the stream is changed to it; when left out, an existing stream is left as it is and
   * a new one gets 1.
   */
  replicas?: number;
}

/** What `ensureResultsStream` found or did. */
export type ResultsStreamState = 'created' | 'exists' | 'replicas-changed';

/** Creates the results stream when it is missing (idempotent); throws when this client may not. */
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
      return 'created';
    } catch (err) {
      // Another client may have created it a moment ago: go on with that one; otherwise this client may not.
      info = await jsm.streams.info(RESULTS_STREAM.name).catch(() => {
        throw err;
      });
    }
  }
  if (options.replicas === undefined || info.config.num_replicas === options.replicas) return 'exists';
  await jsm.streams.update(RESULTS_STREAM.name, { ...info.config, num_replicas: options.replicas });
  return 'replicas-changed';
}
