#!/usr/bin/env node
// cascade-cloud: serve a model's cloud stages on NATS until SIGTERM/SIGINT, then drain and exit 0.
import {
  flagSource,
  flagTable,
  isMain,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  optionFlags,
  optionsFromFlags,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { WORKER_OPTIONS, type WorkerOptions } from './options.js';
import { CloudWorker } from './worker.js';

const FLAGS = {
  ...optionFlags(WORKER_OPTIONS),
  ...NATS_AUTH_FLAGS,
  help: { type: 'boolean', help: 'show this help' },
} as Record<string, Flag> & typeof NATS_AUTH_FLAGS & { help: Flag };

const USAGE = usage('cascade-cloud --model DIR|NAME@VERSION [options]', FLAGS);

/** The README's flag table of cascade-cloud. */
export const WORKER_FLAG_TABLE = flagTable(WORKER_OPTIONS, NATS_AUTH_FLAGS);

/** Worker options from flags and environment, or 'help'. */
export function parseWorkerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WorkerOptions | 'help' {
  const f = parseFlags(FLAGS, argv, env);
  if (f.help) return 'help';
  const o: WorkerOptions = { model: '', ...optionsFromFlags(WORKER_OPTIONS, f) };
  o.natsVia = flagSource(FLAGS, 'nats', argv, env);
  o.natsAuth = natsAuthFromFlags(f);
  return o;
}

async function main(): Promise<void> {
  let options: WorkerOptions | 'help';
  try {
    options = parseWorkerArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`cascade-cloud: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  let worker: CloudWorker;
  try {
    worker = await CloudWorker.create(options);
  } catch (err) {
    process.stderr.write(`cascade-cloud: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => void worker.shutdown());
  await worker.run();
  if (worker.failed) {
    process.stderr.write(`cascade-cloud: stopping: ${redactSecrets(worker.failed.message)}\n`);
    process.exit(1);
  }
  process.exit(0);
}

if (isMain(import.meta.url)) void main();
