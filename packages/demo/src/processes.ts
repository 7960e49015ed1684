import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { CascadeError, ERROR_CODES } from '@cascade/proto';

const require = createRequire(import.meta.url);

/** A cloud worker running as its own process (the way operators run them). */
export interface WorkerProcess {
  id: string;
  process: ChildProcess;
  /** Port of its /metrics endpoint (any free port unless `extra` sets --metrics-port). */
  metricsPort: number | null;
  /** Everything it wrote to stderr (structured log lines). */
  log(): string;
  /** SIGTERM, then resolves with the exit code once it has drained. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const tracked = new Map<ChildProcess, { group: boolean }>();

/**
 * Remembers a child process until it exits, so that `killTracked()` can stop it when its starter dies or gives up
 * (a failed or timed-out test). With `group`, the child was spawned `detached` and its whole process group is
 * killed, grandchildren included.
 */
export function track<T extends ChildProcess>(child: T, options: { group?: boolean } = {}): T {
  tracked.set(child, { group: options.group ?? false });
  child.once('exit', () => tracked.delete(child));
  return child;
}

/** SIGKILLs every tracked child that is still running (synchronous: safe in an `exit` handler). */
export function killTracked(): number {
  let n = 0;
  for (const [child, { group }] of tracked) {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) continue;
    try {
      process.kill(group ? -child.pid : child.pid, 'SIGKILL');
      n++;
    } catch {
      // already gone
    }
  }
  tracked.clear();
  return n;
}

/** Signals a child process and resolves with its exit code once it has exited (at once if it already has). */
export function stopChild(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
    proc.once('exit', (code) => resolve(code));
    proc.kill(signal);
  });
}

/** Path of the cascade-cloud CLI. */
export function cloudCli(): string {
  return require.resolve('@cascade/cloud').replace(/index\.js$/, 'cli.js');
}

/** Starts `cascade-cloud` and resolves once its service endpoint is subscribed. */
export async function startWorker(args: {
  model: string;
  nats: string;
  id: string;
  extra?: string[];
}): Promise<WorkerProcess> {
  const metricsArgs = args.extra?.includes('--metrics-port')
    ? []
    : ['--metrics-port', '0', '--metrics-host', '127.0.0.1'];
  const proc = track(
    spawn(
      process.execPath,
      [cloudCli(), '--model', args.model, '--nats', args.nats, '--id', args.id, ...metricsArgs, ...(args.extra ?? [])],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    ),
  );
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new CascadeError(ERROR_CODES.STATE, `worker ${args.id} did not start in 30 s:\n${log}`)),
      30_000,
    );
    proc.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('"worker_started"')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new CascadeError(ERROR_CODES.STATE, `worker ${args.id} exited with code ${code}:\n${log}`));
    });
  });
  const started = log.split('\n').find((l) => l.includes('"worker_started"'));
  const metricsPort = started ? ((JSON.parse(started) as { metrics_port?: number | null }).metrics_port ?? null) : null;
  return {
    id: args.id,
    process: proc,
    metricsPort,
    log: () => log,
    stop: (signal = 'SIGTERM') => stopChild(proc, signal),
  };
}
