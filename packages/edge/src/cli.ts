#!/usr/bin/env node
// cascade-edge: run the edge stages over a source; one JSON line per frame on stdout (or --out), a summary on stderr.
import {
  credsName,
  FlagError,
  flagSource,
  flagTable,
  isMain,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  numberFlag,
  optionFlags,
  optionsFromFlags,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { createWriteStream, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { EdgeAgent } from './agent.js';
import { EDGE_OPTIONS, type EdgeOptions } from './options.js';
import { openSource, paced } from './sources.js';
import type { Frame } from './sources.js';
import { formatSummary, SummaryBuilder } from './summary.js';
import { parseWebArgs, serveWeb, WEB_USAGE, type WebOptions } from './web.js';

/** cascade-edge's own flags, besides the agent's options (EDGE_OPTIONS) and NATS credentials. */
const CLI_FLAGS = {
  source: {
    type: 'string',
    env: 'CASCADE_SOURCE',
    help: 'CIFAR .bin[.gz], a folder of PNG/JPEG, a video file, rtsp:// URL or /dev/videoN (required)',
  },
  'source-password-file': {
    type: 'string',
    env: 'CASCADE_SOURCE_PASSWORD_FILE',
    help: "file holding the camera's password (a mounted secret), for an rtsp://USER@HOST/... source; never logged",
  },
  fps: {
    type: 'string',
    env: 'CASCADE_FPS',
    defaultDoc: '5',
    help: 'frames per second sampled from video, RTSP and cameras (ffmpeg decodes and resizes)',
  },
  'max-fps': {
    type: 'string',
    env: 'CASCADE_MAX_FPS',
    defaultDoc: 'no limit',
    help: 'take at most N frames per second from any source (paces file replays)',
  },
  repeat: {
    type: 'string',
    env: 'CASCADE_REPEAT',
    defaultDoc: '1',
    help: 'read the source this many times (0: until stopped), e.g. to replay files',
  },
  limit: { type: 'string', help: 'stop after N frames' },
  out: { type: 'string', help: 'write result lines to this file instead of stdout' },
  summary: { type: 'boolean', help: 'print a summary table to stderr at the end' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag & { defaultDoc?: string }>;

const FLAGS = { ...optionFlags(EDGE_OPTIONS), ...NATS_AUTH_FLAGS, ...CLI_FLAGS } as Record<string, Flag> &
  typeof NATS_AUTH_FLAGS &
  typeof CLI_FLAGS;

/** The README's flag table of cascade-edge. */
export const EDGE_FLAG_TABLE = flagTable(EDGE_OPTIONS, { ...NATS_AUTH_FLAGS, ...CLI_FLAGS });

const USAGE = `${usage('cascade-edge --model DIR|NAME@VERSION --source SPEC [options]', FLAGS)}\nAlso: cascade-edge web [options]: serves the browser edge (cascade-edge web --help).\n`;

export function parseEdgeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env) {
  const f = parseFlags(FLAGS, argv, env);
  if (f.help) return 'help' as const;
  if (!f.source) throw new FlagError('--source is required');
  const o: EdgeOptions = { model: '', ...optionsFromFlags(EDGE_OPTIONS, f) };
  if (o.nats) o.natsVia = flagSource(FLAGS, 'nats', argv, env);
  o.natsAuth = natsAuthFromFlags(f);
  if (o.natsAuth.creds) {
    const id = cameraOfDevice(o.natsAuth.creds, o.id);
    if (id !== undefined) o.id = id;
  }
  // The outbox is on disk by default for the command (in memory for the library): results survive a restart.
  const stateHome = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  o.outboxDir ??= join(stateHome, 'cascade', 'outbox', o.id ?? hostname());
  return {
    options: o,
    source: f.source,
    ...(f['source-password-file'] ? { password: readSecret('source-password-file', f['source-password-file']) } : {}),
    fps: numberFlag('fps', f.fps),
    limit: numberFlag('limit', f.limit),
    maxFps: numberFlag('max-fps', f['max-fps']),
    repeat: nonNegativeInt('repeat', numberFlag('repeat', f.repeat) ?? 1),
    out: f.out,
    summary: Boolean(f.summary),
  };
}

/**
 * With a device's credentials (its user is named by its id, `<site>.<agent>`), the edge id is one of the device's
 * cameras: `--id cam-1` stands for `<site>.<agent>.cam-1`, and an id outside the device is refused here, before
 * the server would refuse its every message.
 */
function cameraOfDevice(creds: string, id: string | undefined): string | undefined {
  let device: string | undefined;
  try {
    device = credsName(creds);
  } catch (err) {
    throw new FlagError(`--nats-creds: cannot read ${creds}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`); // prettier-ignore
  }
  if (!device || !/^[\w-]+\.[\w-]+$/.test(device)) return id; // a role's credentials, or not cascade's
  if (id === undefined) throw new FlagError(`--id is required with the credentials of device ${device}: its camera, e.g. --id cam-1 for ${device}.cam-1`); // prettier-ignore
  if (!id.includes('.')) return `${device}.${id}`;
  if (id.startsWith(`${device}.`) && id.split('.').length === 3) return id;
  throw new FlagError(`--id ${id} is not a camera of device ${device}, whose credentials these are: --id cam-1 or --id ${device}.cam-1`); // prettier-ignore
}

/** A secret from a file (a mounted Kubernetes or Compose secret): its first line; a FlagError names the flag. */
function readSecret(flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n')[0]!.trim();
  } catch (err) {
    throw new FlagError(
      `--${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

/** `cascade-edge web`: serves the browser edge until stopped. */
async function web(argv: string[]): Promise<void> {
  let options: WebOptions | 'help';
  try {
    options = parseWebArgs(argv);
    if (options === 'help') return void process.stdout.write(WEB_USAGE);
  } catch (err) {
    process.stderr.write(`cascade-edge web: ${redactSecrets((err as Error).message)}\n${WEB_USAGE}`);
    process.exit(2);
  }
  try {
    const { server, url } = await serveWeb(options);
    process.stderr.write(`cascade-edge web: serving the browser edge at ${url}\n`);
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => server.close(() => process.exit(0)));
  } catch (err) {
    process.stderr.write(`cascade-edge web: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
}

async function main(): Promise<void> {
  if (process.argv[2] === 'web') return web(process.argv.slice(3));
  let args: ReturnType<typeof parseEdgeArgs>;
  try {
    args = parseEdgeArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`cascade-edge: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  if (args === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  let agent: EdgeAgent;
  try {
    agent = await EdgeAgent.create(args.options);
  } catch (err) {
    process.stderr.write(`cascade-edge: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
  const sink = args.out ? createWriteStream(args.out) : process.stdout;
  // Running aggregates, not the results: memory stays flat however long the camera runs.
  const summary = new SummaryBuilder(agent.model.manifest.exits.length);
  let frames = 0;
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') stop.abort(); // the reader went away (| head): stop taking frames, close cleanly
  });
  try {
    const size = agent.model.manifest.input.shape[1]!;
    const open = () =>
      openSource(args.source, {
        size,
        ...(args.password !== undefined ? { password: args.password } : {}),
        ...(args.fps ? { fps: args.fps } : {}),
        ...(args.limit ? { limit: args.limit } : {}),
      });
    const source = repeated(open, args.repeat);
    frames = await agent.run(untilAborted(paced(source, args.maxFps, stop.signal), stop.signal), (r) => {
      summary.add(r);
      sink.write(`${JSON.stringify(r)}\n`);
    });
  } catch (err) {
    process.stderr.write(`cascade-edge: ${redactSecrets((err as Error).message)}\n`);
    await agent.shutdown();
    process.exit(exitStatus(err));
  }
  await agent.shutdown();
  if (sink !== process.stdout)
    await new Promise<void>((resolve) => (sink as NodeJS.WritableStream).end(() => resolve()));
  if (args.summary) {
    const op = args.options.thresholds
      ? 'custom'
      : (args.options.operatingPoint ?? agent.model.manifest.default_operating_point ?? '');
    process.stderr.write(`${formatSummary(summary.summary(frames, op))}\n`);
  }
}

/** The frames of `times` fresh openings of a source, one after the other (0: forever). */
async function* repeated(open: () => Promise<AsyncIterable<Frame>>, times: number): AsyncGenerator<Frame> {
  for (let i = 0; times === 0 || i < times; i++) yield* await open();
}

/** The frames of `source` until `signal` aborts, also while the source is stalled waiting for its next frame. */
async function* untilAborted(source: AsyncIterable<Frame>, signal: AbortSignal): AsyncGenerator<Frame> {
  const it = source[Symbol.asyncIterator]();
  // One listener per wait, removed after it: racing one long-lived promise would keep a reaction per frame forever.
  const next = () =>
    new Promise<IteratorResult<Frame> | 'aborted'>((resolve, reject) => {
      const onAbort = () => resolve('aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      it.next().then(
        (r) => (signal.removeEventListener('abort', onAbort), resolve(r)),
        (err: unknown) => (signal.removeEventListener('abort', onAbort), reject(err)),
      );
    });
  try {
    while (!signal.aborted) {
      const r = await next();
      if (r === 'aborted' || r.done) return;
      yield r.value;
    }
  } finally {
    void it.return?.();
  }
}

if (isMain(import.meta.url)) void main();

function nonNegativeInt(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new FlagError(`--${name} must be an integer >= 0, got ${n}`);
  return n;
}
