import { clip, FLEET } from '@cascade/proto';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Log, NatsLink } from './link.js';

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

/** Wait before trying the bucket again after a failure (missing bucket, NATS away). */
const WATCH_RETRY_MS = 3000;
/**
 * Wait after a permissions violation (a login that does not cover the bucket, such as a camera behind a site leaf
 * node): it is not going to change soon, and each try costs a line in the server's and the client's logs.
 */
export const DENIED_RETRY_MS = 300_000;
export const isPermissionError = (err: Error): boolean => /permission/i.test(err.message);

/**
 * Watches some keys of a key-value bucket for as long as it is open: every current value first, then each change,
 * passed to `onEntry` in order. It waits for NATS, and starts again after a missing bucket, a lost connection or a
 * refused permission (logged once until it works again). Never throws.
 */
export class KeyWatch {
  private closed = false;
  private stops: (() => void)[] = [];
  private complained = false;

  constructor(
    private readonly link: NatsLink,
    private readonly bucket: string,
    private readonly keys: string[],
    private readonly onEntry: (e: KvWatchEntry) => void,
    private readonly log: Log,
    /** Names its log events: `<events>_watching`, `<events>_unavailable`. */
    private readonly events = 'fleet_config',
  ) {}

  start(): void {
    void this.loop();
  }

  close(): void {
    this.closed = true;
    for (const stop of this.stops.splice(0)) stop();
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      let wait = WATCH_RETRY_MS;
      const nc = this.link.nc;
      if (nc && this.link.connected) {
        try {
          const kv = await openBucket(nc, this.bucket);
          await kv.status(); // fails here when the bucket is missing or unreadable
          const watchers = await Promise.all(this.keys.map((key) => kv.watch({ key })));
          this.complained = false;
          this.log(`${this.events}_watching`, { bucket: this.bucket, keys: this.keys });
          this.stops = watchers.map((w) => () => w.stop());
          if (this.closed) this.close();
          await Promise.all(watchers.map(async (w) => { for await (const e of w) this.onEntry(e); })); // prettier-ignore
        } catch (err) {
          wait = isPermissionError(err as Error) ? DENIED_RETRY_MS : WATCH_RETRY_MS;
          if (!this.complained) {
            this.complained = true;
            this.log(`${this.events}_unavailable`, { bucket: this.bucket, keys: this.keys, error: clip((err as Error).message, 200), retry_ms: wait }); // prettier-ignore
          }
        }
      }
      if (!this.closed) await new Promise((resolve) => setTimeout(resolve, wait).unref());
    }
  }
}

/**
 * Runs an async task in the background, one run at a time: asked again while it runs, it runs once more afterwards
 * (however often it was asked), so the last request is always served. The task handles its own errors.
 */
export class Serial {
  private running: Promise<void> | undefined;
  private again = false;

  constructor(private readonly task: () => Promise<void>) {}

  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.again = false;
    this.running = this.task().finally(() => {
      this.running = undefined;
      if (this.again) this.kick();
    });
  }

  /** Resolves once no run is under way or asked for. */
  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }
}
