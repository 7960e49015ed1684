import { FLEET } from '@cascade/proto';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';

/** What `ensureFleetBuckets` created (names of the buckets that were missing). */
export type FleetBuckets = { created: string[] };

/**
 * Creates the fleet's key-value buckets when missing (idempotent): the settings bucket keeps a few revisions of each
 * key, the registry drops an edge's key `FLEET.edgeTtlMs` after its last heartbeat. Throws when this client may not.
 */
export async function ensureFleetBuckets(nc: NatsConnection, replicas = 1): Promise<FleetBuckets> {
  const kvm = new Kvm(nc);
  const created: string[] = [];
  const want = [
    { name: FLEET.configBucket, opts: { history: FLEET.configHistory, replicas } },
    { name: FLEET.edgesBucket, opts: { history: 1, ttl: FLEET.edgeTtlMs, replicas } },
  ];
  for (const { name, opts } of want) {
    const exists = await kvm
      .open(name)
      .then((kv) => kv.status())
      .then(
        () => true,
        () => false,
      );
    if (exists) continue;
    await kvm.create(name, opts);
    created.push(name);
  }
  return { created };
}

/** Opens an existing bucket; fails (with the server's words) when it is missing or this client may not read it. */
export function openBucket(nc: NatsConnection, name: string): Promise<KV> {
  return new Kvm(nc).open(name);
}
