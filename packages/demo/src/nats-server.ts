import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild, track } from './processes.js';
import { CascadeError, ERROR_CODES } from '@cascade/proto';

/** A nats-server this process started, on a loopback port, with JetStream. */
export interface LocalNats {
  url: string;
  port: number;
  /** JetStream's store: give it to a restarted server to keep its streams. */
  storeDir: string;
  process: ChildProcess;
  /**
   * Stops it (SIGTERM; `SIGKILL` for a crash) and resolves once it has exited; then removes its temporary directory
   * (its configuration, and its store when it made one), unless `keepStore` asks to restart a server on the store.
   */
  stop(signal?: NodeJS.Signals, options?: { keepStore?: boolean }): Promise<void>;
}

export interface NatsServerOptions {
  /** Port to listen on; default: any free port. Give the old port to restart a server in place. */
  port?: number;
  /** JetStream store directory; default: a new temporary directory. */
  storeDir?: string;
  maxPayload?: number;
  /** More configuration, appended as is. */
  extraConfig?: string;
  /** The nats-server program. @default nats-server on PATH */
  binary?: string;
  /** Whether it runs JetStream (a camera site's leaf server does not: the cloud keeps the streams). @default true */
  jetstream?: boolean;
  /** Environment variables its configuration reads, besides this process's. */
  env?: Record<string, string>;
  /** Files written beside its configuration (name: text), for `include ./name` in `extraConfig`. */
  files?: Record<string, string>;
}

export class NatsServerMissingError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.DEPENDENCY, message, options);
  }
}

/** Throws, saying how to install it, when `nats-server` is not on PATH. */
export function ensureNatsServer(): void {
  if (spawnSync('sh', ['-c', 'command -v nats-server'], { stdio: 'ignore' }).status === 0) return;
  throw new NatsServerMissingError(
    'nats-server is not on PATH. Install it with scripts/setup demo (Debian: apt-get install nats-server; elsewhere the ' +
      'release binary of nats-io/nats-server), or point NATS_URL / --nats at a running server.',
  );
}

/** Starts nats-server on 127.0.0.1 with JetStream; resolves once it accepts clients. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<LocalNats> {
  if (!options.binary) ensureNatsServer();
  const dir = mkdtempSync(join(tmpdir(), 'cascade-nats-'));
  const storeDir = options.storeDir ?? join(dir, 'jetstream');
  const conf = join(dir, 'nats.conf');
  for (const [name, text] of Object.entries(options.files ?? {})) writeFileSync(join(dir, name), text);
  writeFileSync(
    conf,
    [
      `listen: 127.0.0.1:${options.port ?? -1}`,
      options.jetstream === false ? '' : `jetstream { store_dir: ${JSON.stringify(storeDir)} }`,
      options.maxPayload ? `max_payload: ${options.maxPayload}` : '',
      options.extraConfig ?? '',
    ].join('\n'),
  );
  const env = { ...process.env, ...options.env };
  const proc = track(spawn(options.binary ?? 'nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'], env }));
  const port = await new Promise<number>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(
      () => reject(new CascadeError(ERROR_CODES.DEPENDENCY, `nats-server did not start in 10 s:\n${log}`)),
      10_000,
    );
    const onData = (d: Buffer) => {
      log += d.toString();
      const m = /Listening for client connections on [\d.]+:(\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new CascadeError(ERROR_CODES.DEPENDENCY, `nats-server exited with code ${code}:\n${log}`));
    });
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    process: proc,
    stop: async (signal = 'SIGTERM', { keepStore = false } = {}) => {
      await stopChild(proc, signal);
      if (!keepStore) rmSync(dir, { recursive: true, force: true });
    },
  };
}
