import { RESULTS_STREAM } from '@cascade/proto';
import { DiscardPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

const ms = (x: number) => x * 1_000_000; // JetStream durations are nanoseconds

/** Creates the results stream when it is missing (idempotent); throws when this client may not. */
export async function ensureResultsStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(RESULTS_STREAM.name);
  } catch {
    await jsm.streams.add({
      name: RESULTS_STREAM.name,
      subjects: [...RESULTS_STREAM.subjects],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_age: ms(RESULTS_STREAM.maxAgeMs),
      max_bytes: RESULTS_STREAM.maxBytes,
      duplicate_window: ms(RESULTS_STREAM.duplicateWindowMs),
    });
  }
}
