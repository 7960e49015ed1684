#!/usr/bin/env node
// cascade-results: read the results stream. One JSON line per FrameResult on stdout, or --stats for counts.
import {
  flagSource,
  isMain,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  NatsLink,
  numberFlag,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { frameResultJson, readResults, type ResultStats } from './results.js';

const FLAGS = {
  nats: { type: 'string', env: 'NATS_URL', help: 'NATS server URL(s) (default nats://127.0.0.1:4222)' },
  ...NATS_AUTH_FLAGS,
  edge: { type: 'string', help: 'only this edge id (default: every edge)' },
  durable: {
    type: 'string',
    help: 'durable consumer name: each result is printed once across runs (acknowledged after printing)',
  },
  follow: { type: 'boolean', help: 'keep waiting for new results (default: stop when caught up)' },
  stats: { type: 'boolean', help: 'print counts instead of results: per edge and outcome, unique frames, duplicates' },
  'stall-ms': {
    type: 'string',
    help: 'without --follow, fail when results are pending but none arrive for this long (default 30000)',
  },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const USAGE = usage('cascade-results [--durable NAME] [--follow] [--stats] [options]', FLAGS);

async function main(): Promise<void> {
  let f: ReturnType<typeof parseFlags<typeof FLAGS>>;
  let stallMs: number | undefined;
  try {
    f = parseFlags(FLAGS, process.argv.slice(2));
    stallMs = numberFlag('stall-ms', f['stall-ms']);
  } catch (err) {
    process.stderr.write(`cascade-results: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  if (f.help) {
    process.stdout.write(USAGE);
    return;
  }
  // A closed pipe (| head) ends the output, not in an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));
  const log = () => undefined;
  const via = flagSource(FLAGS, 'nats', process.argv.slice(2));
  let link: NatsLink;
  try {
    link = await NatsLink.open({
      servers: f.nats ?? 'nats://127.0.0.1:4222',
      via,
      name: 'cascade-results',
      auth: { inboxPrefix: '_INBOX_monitor', ...natsAuthFromFlags(f) },
      log,
      firstConnect: 'now',
    });
  } catch (err) {
    process.stderr.write(`cascade-results: ${redactSecrets((err as Error).message)}\n`);
    process.exit(1);
  }
  const stop = () => void link.close().then(() => process.exit(0));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, stop);
  const stats: ResultStats = { messages: 0, unique: 0, duplicates: 0, byEdge: {} };
  const seen = new Set<string>();
  try {
    await readResults(
      link.nc!,
      {
        ...(f.edge ? { edge: f.edge } : {}),
        ...(f.durable ? { durable: f.durable } : {}),
        follow: Boolean(f.follow),
        ...(stallMs !== undefined ? { stallMs } : {}),
        onUndecodable: (subject, err) =>
          process.stderr.write(
            `cascade-results: skipped a message on ${subject} that is not a FrameResult: ${err.message}\n`,
          ),
      },
      (r) => {
        if (!f.stats) {
          process.stdout.write(`${JSON.stringify(frameResultJson(r))}\n`);
          return;
        }
        stats.messages++;
        const key = `${r.edgeId}/${r.runId}/${r.sequence}`;
        if (seen.has(key)) stats.duplicates++;
        else seen.add(key);
        const e = (stats.byEdge[r.edgeId] ??= {});
        e[r.outcome] = (e[r.outcome] ?? 0) + 1;
      },
    );
  } catch (err) {
    process.stderr.write(`cascade-results: ${redactSecrets((err as Error).message)}\n`);
    await link.close();
    process.exit(exitStatus(err));
  }
  if (f.stats) process.stdout.write(`${JSON.stringify({ ...stats, unique: seen.size })}\n`);
  await link.close();
}

if (isMain(import.meta.url)) void main();
