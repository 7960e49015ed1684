// The edge's side of the fleet configuration: it watches its own key and the fleet default in the settings bucket,
// applies changes between frames (refusing invalid ones without disturbing the running edge), and keeps its entry in
// the registry fresh.
import { clip, configKey, FLEET, parseEdgeSettings, type EdgeHeartbeat, type EdgeSettings } from '@cascade/proto';
import { openBucket, type Log, type NatsLink } from '@cascade/service';
import type { KV, KvWatchEntry } from '@nats-io/kv';

/** How the agent takes settings: throws a ConfigError (naming what is wrong) to refuse them. */
export interface FleetTarget {
  apply(settings: EdgeSettings): void;
  heartbeat(): Omit<EdgeHeartbeat, 'config_revision' | 'config_error' | 'sent_unix_ms'>;
}

export interface FleetCounters {
  applied(): void;
  refused(): void;
}

/** Wait before trying the buckets again after a failure (missing bucket, NATS away). */
const RETRY_MS = 3000;
/**
 * Wait after a permissions violation (an edge whose login does not cover the fleet's buckets, such as a camera behind
 * a site leaf node): it is not going to change soon, and each try costs a line in the server's and the edge's logs.
 */
const DENIED_RETRY_MS = 300_000;
const denied = (err: Error) => /permission/i.test(err.message);

export class FleetClient {
  private readonly values = new Map<string, { text: string; revision: number }>();
  private revision = 0;
  private error: string | undefined;
  private closed = false;
  private readonly stops: (() => void)[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private complained = new Set<string>();
  /** No heartbeat before this time (after a permissions violation). */
  private heartbeatPausedUntil = 0;
  /** The registry bucket, opened once (the connection outlives reconnects); dropped after a failure. */
  private registry: Promise<KV> | undefined;
  /** Resolves after each applied or refused change (for tests and the first application at start). */
  private changed: (() => void)[] = [];

  constructor(
    private readonly link: NatsLink,
    private readonly id: string,
    private readonly target: FleetTarget,
    private readonly counters: FleetCounters,
    private readonly log: Log,
  ) {}

  /** Starts watching and heartbeating in the background; never throws. */
  start(): void {
    void this.watchLoop();
    this.heartbeatTimer = setInterval(() => void this.beat(), FLEET.heartbeatMs);
    this.heartbeatTimer.unref();
    void this.beat();
  }

  /** The settings revision last applied (0: none), and why the last one was refused. */
  get status(): { revision: number; error?: string } {
    return { revision: this.revision, ...(this.error ? { error: this.error } : {}) };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    for (const stop of this.stops.splice(0)) stop();
  }

  /** Resolves at the next applied or refused change. */
  nextChange(): Promise<void> {
    return new Promise((resolve) => this.changed.push(resolve));
  }

  private async watchLoop(): Promise<void> {
    while (!this.closed) {
      let wait = RETRY_MS;
      const nc = this.link.nc;
      if (!nc || !this.link.connected) {
        await sleep(RETRY_MS);
        continue;
      }
      try {
        const kv = await openBucket(nc, FLEET.configBucket);
        await kv.status(); // fails here when the bucket is missing or unreadable
        const keys = [configKey.default, configKey.edge(this.id)];
        const watchers = await Promise.all(keys.map((key) => kv.watch({ key })));
        this.complained.delete('watch');
        this.log('fleet_config_watching', { bucket: FLEET.configBucket, keys });
        this.stops.splice(0, this.stops.length, ...watchers.map((w) => () => w.stop()));
        await Promise.all(watchers.map((w) => this.consume(w)));
      } catch (err) {
        wait = denied(err as Error) ? DENIED_RETRY_MS : RETRY_MS;
        if (!this.complained.has('watch')) {
          this.complained.add('watch');
          this.log('fleet_config_unavailable', {
            bucket: FLEET.configBucket,
            error: clip((err as Error).message, 200),
            retry_ms: wait,
          });
        }
      }
      if (!this.closed) await sleep(wait);
    }
  }

  private async consume(entries: AsyncIterable<KvWatchEntry>): Promise<void> {
    for await (const e of entries) {
      if (e.operation === 'PUT') this.values.set(e.key, { text: e.string(), revision: e.revision });
      else this.values.delete(e.key);
      this.reapply(e.revision);
    }
  }

  /** Merges the fleet default and the edge's own key (its fields win) and applies them, or refuses the change. */
  private reapply(revision: number): void {
    const merged: EdgeSettings = {};
    try {
      for (const key of [configKey.default, configKey.edge(this.id)]) {
        const v = this.values.get(key);
        if (v) Object.assign(merged, parseEdgeSettings(v.text, key));
      }
      this.target.apply(merged);
      this.revision = Math.max(this.revision, revision);
      this.error = undefined;
      this.counters.applied();
      this.log('fleet_config_applied', { revision, settings: merged });
    } catch (err) {
      this.error = clip((err as Error).message, 300);
      this.counters.refused();
      this.log('fleet_config_refused', { revision, error: this.error, hint: 'the edge keeps its current settings' });
    }
    void this.beat();
    for (const w of this.changed.splice(0)) w();
  }

  private async beat(): Promise<void> {
    const nc = this.link.nc;
    if (this.closed || !nc || !this.link.connected || Date.now() < this.heartbeatPausedUntil) return;
    const hb: EdgeHeartbeat = {
      ...this.target.heartbeat(),
      config_revision: this.revision,
      ...(this.error ? { config_error: this.error } : {}),
      sent_unix_ms: Date.now(),
    };
    try {
      this.registry ??= openBucket(nc, FLEET.edgesBucket);
      await (await this.registry).put(this.id, JSON.stringify(hb));
      this.complained.delete('heartbeat');
    } catch (err) {
      this.registry = undefined;
      if (denied(err as Error)) this.heartbeatPausedUntil = Date.now() + DENIED_RETRY_MS;
      if (!this.complained.has('heartbeat')) {
        this.complained.add('heartbeat');
        this.log('fleet_heartbeat_failed', { bucket: FLEET.edgesBucket, error: clip((err as Error).message, 200) });
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
