// The edge's side of the fleet configuration: it watches its own key and the fleet default in the settings bucket,
// applies changes between frames (refusing invalid ones without disturbing the running edge), follows its model's
// rollout (switching versions between frames), and keeps its entry in the registry fresh.
import {
  clip,
  configKey,
  edgeVersion,
  FLEET,
  parseEdgeSettings,
  parseModelRollout,
  type EdgeHeartbeat,
  type EdgeSettings,
} from '@cascade/proto';
import {
  DENIED_RETRY_MS,
  isPermissionError,
  KeyWatch,
  openBucket,
  Serial,
  type Log,
  type NatsLink,
} from '@cascade/service';
import type { KV, KvWatchEntry } from '@nats-io/kv';

type Beat = Omit<EdgeHeartbeat, 'config_revision' | 'config_error' | 'model_target' | 'model_error' | 'sent_unix_ms'>;

/** How the agent takes settings and models: each throws (naming what is wrong) to refuse them. */
export interface FleetTarget {
  /** The model's name, whose rollout (`models.<name>`) the edge follows. */
  readonly modelName: string;
  /** The version running now. */
  readonly modelVersion: string;
  apply(settings: EdgeSettings): void;
  /** Loads another version of the model and switches to it between frames, with `settings` applied. */
  switchModel(version: string, settings: EdgeSettings): Promise<void>;
  heartbeat(): Beat;
}

export interface FleetCounters {
  applied(): void;
  refused(): void;
  /** A model switch: `switched` or `refused`. */
  model(result: 'switched' | 'refused'): void;
}

export class FleetClient {
  private readonly values = new Map<string, { text: string; revision: number }>();
  private revision = 0;
  private error: string | undefined;
  private closed = false;
  private watch: KeyWatch | undefined;
  /** The version the model's rollout asks this edge to run (undefined: no rollout), and why it could not. */
  private wanted: string | undefined;
  private modelError: string | undefined;
  /** Switches to the wanted version, one at a time. */
  private readonly switcher = new Serial(() => this.follow());
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** A failed heartbeat was logged (once until one works again). */
  private complained = false;
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
    const keys = [configKey.default, configKey.edge(this.id), configKey.model(this.target.modelName)];
    this.watch = new KeyWatch(this.link, FLEET.configBucket, keys, (e) => this.take(e), this.log);
    this.watch.start();
    this.heartbeatTimer = setInterval(() => void this.beat(), FLEET.heartbeatMs);
    this.heartbeatTimer.unref();
    void this.beat();
  }

  /** The settings revision last applied (0: none), why the last one was refused, and the rollout's version. */
  get status(): { revision: number; error?: string; model?: string; modelError?: string } {
    return {
      revision: this.revision,
      ...(this.error ? { error: this.error } : {}),
      ...(this.wanted ? { model: this.wanted } : {}),
      ...(this.modelError ? { modelError: this.modelError } : {}),
    };
  }

  /** Stops watching; waits for a model switch under way. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    this.watch?.close();
    await this.switcher.idle();
  }

  private take(e: KvWatchEntry): void {
    if (e.key === configKey.model(this.target.modelName)) {
      if (e.operation !== 'PUT') return; // a deleted rollout leaves the edge on the version it runs
      try {
        this.wanted = edgeVersion(parseModelRollout(e.string(), e.key), this.id);
      } catch (err) {
        this.modelError = clip((err as Error).message, 300);
        this.counters.model('refused');
        this.log('model_rollout_refused', { key: e.key, revision: e.revision, error: this.modelError });
        void this.beat();
        return;
      }
      this.switcher.kick();
      return;
    }
    if (e.operation === 'PUT') this.values.set(e.key, { text: e.string(), revision: e.revision });
    else this.values.delete(e.key);
    this.reapply(e.revision);
  }

  /**
   * Switches to the wanted version if the edge runs another. A refused version is tried again at the next change of
   * the rollout (each write of `models.<name>`), not before.
   */
  private async follow(): Promise<void> {
    const version = this.wanted;
    const from = this.target.modelVersion;
    if (this.closed || !version || version === from) {
      if (version === from && this.modelError) {
        this.modelError = undefined;
        void this.beat();
      }
      return;
    }
    try {
      await this.target.switchModel(version, this.merged());
      this.modelError = undefined;
      this.counters.model('switched');
      this.log('model_switched', { model: this.target.modelName, from, to: version });
    } catch (err) {
      const ref = `${this.target.modelName}@${version}`;
      const why = clip((err as Error).message, 300);
      this.modelError = why.includes(ref) ? why : `${ref}: ${why}`;
      this.counters.model('refused');
      this.log('model_switch_refused', { model: this.target.modelName, version, running: from, error: this.modelError, hint: 'the edge keeps running its current version' }); // prettier-ignore
    }
    void this.beat();
    for (const w of this.changed.splice(0)) w();
  }

  /** The fleet default and the edge's own key merged (its fields win); throws on an invalid value. */
  private merged(): EdgeSettings {
    const merged: EdgeSettings = {};
    for (const key of [configKey.default, configKey.edge(this.id)]) {
      const v = this.values.get(key);
      if (v) Object.assign(merged, parseEdgeSettings(v.text, key));
    }
    return merged;
  }

  /** Resolves at the next applied or refused change. */
  nextChange(): Promise<void> {
    return new Promise((resolve) => this.changed.push(resolve));
  }

  /** Merges the fleet default and the edge's own key (its fields win) and applies them, or refuses the change. */
  private reapply(revision: number): void {
    try {
      const merged = this.merged();
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
      ...(this.wanted ? { model_target: this.wanted } : {}),
      ...(this.modelError ? { model_error: this.modelError } : {}),
      sent_unix_ms: Date.now(),
    };
    try {
      this.registry ??= openBucket(nc, FLEET.edgesBucket);
      await (await this.registry).put(this.id, JSON.stringify(hb));
      this.complained = false;
    } catch (err) {
      this.registry = undefined;
      if (isPermissionError(err as Error)) this.heartbeatPausedUntil = Date.now() + DENIED_RETRY_MS;
      if (!this.complained) {
        this.complained = true;
        this.log('fleet_heartbeat_failed', { bucket: FLEET.edgesBucket, error: clip((err as Error).message, 200) });
      }
    }
  }
}
