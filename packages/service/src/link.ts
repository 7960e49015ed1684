import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { natsConnectOptions, type NatsAuth } from './nats-auth.js';
import { CascadeError, ERROR_CODES, redactSecrets } from '@cascade/proto';

export type Log = (event: string, fields?: Record<string, unknown>) => void;

/** How long the client waits between reconnect attempts, plus up to `RECONNECT_JITTER_MS` at random. */
export const RECONNECT_WAIT_MS = 1000;
export const RECONNECT_JITTER_MS = 500;
/** Backoff of a first connection that keeps failing: doubles from 1 s up to this, plus jitter. */
export const FIRST_CONNECT_MAX_WAIT_MS = 15_000;

export interface LinkOptions {
  /** NATS server URL(s), comma-separated. */
  servers: string;
  /** Where the URL came from, for error messages: e.g. `--nats / NATS_URL`. */
  via: string;
  /** Client name the server shows. */
  name: string;
  auth?: NatsAuth;
  log: Log;
  /**
   * `background`: return at once and keep trying to connect until `close()`, and again whenever the connection is
   * closed for good (an edge answers locally meanwhile); `wait`: the same until the first connection, then like `now`
   * (a worker started before NATS waits for it; `connection()` resolves once connected); `now`: connect before
   * returning, or throw a LinkError naming the URL and where it came from.
   */
  firstConnect: 'background' | 'wait' | 'now';
}

/** A connection problem that names the server URL and the flag or variable that set it. */
export class LinkError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.NATS, message, options);
  }
}

/**
 * A NATS connection that heals: it reconnects forever with jittered backoff, logs every change (connected,
 * disconnected, reconnected, closed) and says whether it is usable now. Subscriptions survive reconnects (the client
 * restores them). When the connection is closed for good without `close()`: with `firstConnect: 'background'` it
 * starts connecting again; with `'now'`, `lost` resolves with the reason (the owner should exit).
 */
export class NatsLink {
  private conn: NatsConnection | undefined;
  private up = false;
  private closing = false;
  private readonly listeners: ((nc: NatsConnection) => void)[] = [];
  private resolveLost!: (err: Error) => void;
  /** Resolves if the connection is closed for good by anything but `close()`. */
  readonly lost: Promise<Error> = new Promise((resolve) => (this.resolveLost = resolve));
  private retry: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  private firstUp!: (nc: NatsConnection) => void;
  private firstClosed!: (err: Error) => void;
  private readonly first: Promise<NatsConnection> = new Promise((resolve, reject) => {
    this.firstUp = resolve;
    this.firstClosed = reject;
  });

  private constructor(readonly options: LinkOptions) {}

  static async open(options: LinkOptions): Promise<NatsLink> {
    const link = new NatsLink(options);
    void link.first.catch(() => undefined); // rejected only by close(), which nobody need await
    if (options.firstConnect === 'now') {
      try {
        link.attach(await connect(link.connectOptions()));
      } catch (err) {
        throw new LinkError(link.describe(err as Error), { cause: err });
      }
    } else {
      void link.connectInBackground();
    }
    return link;
  }

  /** Resolves with the first connection once it is made; rejects when `close()` comes first. */
  connection(): Promise<NatsConnection> {
    return this.first;
  }

  /** The connection, once one has been made (it may be reconnecting: see `connected`). */
  get nc(): NatsConnection | undefined {
    return this.conn;
  }

  /** Whether the connection is up now. */
  get connected(): boolean {
    return this.up;
  }

  /** Resolves true once connected, or false after `ms`. */
  async waitConnected(ms: number): Promise<boolean> {
    const until = performance.now() + ms;
    while (!this.up && !this.closing && performance.now() < until) await new Promise((r) => setTimeout(r, 10));
    return this.up;
  }

  /** Calls `fn` with the connection now (if connected) and every time it comes up again. */
  onConnect(fn: (nc: NatsConnection) => void): void {
    this.listeners.push(fn);
    if (this.conn && this.up) fn(this.conn);
  }

  /** Drains and closes the connection; stops connecting. Idempotent. */
  async close(): Promise<void> {
    this.closing = true;
    this.firstClosed(new LinkError('closed before NATS was reached'));
    clearTimeout(this.retry);
    this.wakeRetry?.();
    const nc = this.conn;
    this.up = false;
    if (nc && !nc.isClosed()) await nc.drain().catch(() => nc.close());
  }

  private connectOptions(): ConnectionOptions {
    return {
      servers: this.options.servers
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      name: this.options.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: RECONNECT_WAIT_MS,
      reconnectJitter: RECONNECT_JITTER_MS,
      reconnectJitterTLS: RECONNECT_JITTER_MS,
      ...natsConnectOptions(this.options.auth),
    };
  }

  private describe(err: Error): string {
    return redactSecrets(
      `cannot connect to NATS at ${this.options.servers} (set by ${this.options.via}): ${err.message}`,
    );
  }

  private async connectInBackground(): Promise<void> {
    let said = ''; // one line per state change: a new cause is logged, the same cause again is not
    for (let attempt = 0; !this.closing; attempt++) {
      try {
        const nc = await connect(this.connectOptions());
        if (this.closing) {
          await nc.close();
          return;
        }
        this.attach(nc);
        return;
      } catch (err) {
        const wait = Math.min(FIRST_CONNECT_MAX_WAIT_MS, 1000 * 2 ** attempt) + Math.random() * RECONNECT_JITTER_MS;
        const error = this.describe(err as Error);
        if (error !== said)
          this.options.log('nats_unreachable', {
            error,
            retrying: `with backoff, 1 s doubling to ${FIRST_CONNECT_MAX_WAIT_MS / 1000} s`,
          });
        said = error;
        await new Promise<void>((resolve) => {
          this.wakeRetry = resolve;
          this.retry = setTimeout(resolve, wait);
        });
      }
    }
  }

  private attach(nc: NatsConnection): void {
    this.conn = nc;
    this.up = true;
    const { log } = this.options;
    log('nats_connected', { server: nc.getServer() });
    this.firstUp(nc);
    for (const fn of this.listeners) fn(nc);
    void (async () => {
      for await (const s of nc.status()) {
        switch (s.type) {
          case 'disconnect':
            this.up = false;
            log('nats_disconnected', { server: s.server });
            break;
          case 'reconnect':
            this.up = true;
            log('nats_reconnected', { server: s.server });
            for (const fn of this.listeners) fn(nc);
            break;
          case 'error':
            log('nats_error', { error: s.error.message });
            break;
          default:
            break;
        }
      }
    })();
    void nc.closed().then((err) => {
      this.up = false;
      if (this.closing) return;
      const reason = err ?? new LinkError('connection closed');
      log('nats_closed', { error: this.describe(reason) });
      // An edge never gives up: it answers locally and starts connecting again. A worker stops (see `lost`).
      if (this.options.firstConnect === 'background') void this.connectInBackground();
      else this.resolveLost(reason);
    });
  }
}
