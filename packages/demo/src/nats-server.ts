import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './processes.js';

/** A nats-server this process started, on a free loopback port. */
export interface LocalNats {
  url: string;
  port: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

export class NatsServerMissingError extends Error {
  override name = 'NatsServerMissingError';
}

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Makes sure `nats-server` is on PATH: installs Debian's package when running as root with apt-get, otherwise
 * throws with instructions.
 */
export function ensureNatsServer(log: (msg: string) => void = () => undefined): void {
  if (onPath('nats-server')) return;
  if (process.getuid?.() === 0 && onPath('apt-get')) {
    log('nats-server not found: installing it with apt-get (Debian package nats-server)');
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    const install = spawnSync('apt-get', ['install', '-y', '-qq', 'nats-server'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (update.status === 0 && install.status === 0 && onPath('nats-server')) return;
  }
  throw new NatsServerMissingError(
    'nats-server is not on PATH. Install it (Debian/Ubuntu: sudo apt-get install nats-server; elsewhere: ' +
      'the release binary of nats-io/nats-server) or point NATS_URL at a running server.',
  );
}

/** Starts nats-server on 127.0.0.1 with a free port; resolves once it accepts clients. */
export async function startNatsServer(options: { maxPayload?: number; extraConfig?: string } = {}): Promise<LocalNats> {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-nats-'));
  const conf = join(dir, 'nats.conf');
  writeFileSync(conf, `listen: 127.0.0.1:-1\n${options.maxPayload ? `max_payload: ${options.maxPayload}\n` : ''}${options.extraConfig ?? ''}`);
  const proc = spawn('nats-server', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const port = await new Promise<number>((resolve, reject) => {
    let log = '';
    const timer = setTimeout(() => reject(new Error(`nats-server did not start in 10 s:\n${log}`)), 10_000);
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
      reject(new Error(`nats-server exited with code ${code}:\n${log}`));
    });
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    process: proc,
    stop: async () => void (await stopChild(proc)),
  };
}
