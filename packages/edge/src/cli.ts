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
  stderrLog,
  usage,
  type Flag,
} from '@cascade/service';
import { checkFit, parseCameraFlag, parseRegion } from '@cascade/cameras';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { createWriteStream, readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { EdgeAgent } from './agent.js';
import { CameraHost } from './host.js';
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
    help: 'CIFAR .bin[.gz], a folder of PNG/JPEG, a video file, rtsp:// URL or /dev/videoN (this or cameras)',
  },
  camera: {
    type: 'string',
    multiple: true,
    env: 'CASCADE_CAMERAS',
    help: 'a camera of this agent, ID=SOURCE [fit=F] [fps=N] [roi=[NAME:]x,y,w,h]... [substream=URL] [hwaccel=H]; repeatable (the variable: one a line); each is an edge of its own, <agent id>.<ID>',
  },
  cameras: {
    type: 'string',
    env: 'CASCADE_CAMERAS_FILE',
    help: 'a file of cameras, one ID=SOURCE ... a line as --camera takes it (# starts a comment)',
  },
  'camera-password-dir': {
    type: 'string',
    env: 'CASCADE_CAMERA_PASSWORD_DIR',
    help: "a directory of cameras' passwords, a file named by camera (a mounted secret), for rtsp://USER@HOST/... sources",
  },
  fit: {
    type: 'string',
    env: 'CASCADE_FIT',
    defaultDoc: 'crop',
    help: "how a frame that is not square becomes the model's input: crop (the centre square), squash, or letterbox",
  },
  roi: {
    type: 'string',
    multiple: true,
    env: 'CASCADE_ROI',
    help: 'a region of interest, [NAME:]x,y,w,h in pixels or fractions, classified as its own frame (results name it); repeatable',
  },
  'stall-s': {
    type: 'string',
    env: 'CASCADE_STALL_S',
    defaultDoc: '5',
    help: 'a camera with no frame for this long is stalled: reopened, with backoff (1 s doubling to 30 s)',
  },
  hwaccel: {
    type: 'string',
    env: 'CASCADE_HWACCEL',
    defaultDoc: 'none (CPU)',
    help: "ffmpeg's hardware decoder for cameras and video (cuda, vaapi, qsv, ...)",
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
  const flagged = <T>(flag: string, read: () => T): T => {
    try {
      return read();
    } catch (err) {
      throw new FlagError(`--${flag}: ${(err as Error).message}`);
    }
  };
  const fps = numberFlag('fps', f.fps);
  const fit = f.fit === undefined ? undefined : flagged('fit', () => checkFit(f.fit!));
  const regions = f.roi === undefined ? [] : f.roi.split('\n').map((t, i) => flagged('roi', () => parseRegion(t, i + 1))); // prettier-ignore
  const stallS = numberFlag('stall-s', f['stall-s']);
  if (stallS !== undefined && !(stallS > 0)) throw new FlagError(`--stall-s must be above 0, got ${stallS}`);
  const look = { ...(fps ? { fps } : {}), ...(fit ? { fit } : {}), regions, ...(f.hwaccel ? { hwaccel: f.hwaccel } : {}) }; // prettier-ignore
  const lines = [
    ...(f.camera?.split('\n').map((t) => ({ flag: 'camera', t })) ?? []),
    ...(f.cameras ? readCamerasFile(f.cameras).map((t) => ({ flag: 'cameras', t })) : []),
  ];
  const cameras = lines.filter(({ t }) => t.trim()).map(({ flag, t }) => flagged(flag, () => parseCameraFlag(t, look)));
  if (f.source && cameras.length) throw new FlagError('give --source, or cameras (--camera, --cameras), not both');
  const o: EdgeOptions = { model: '', ...optionsFromFlags(EDGE_OPTIONS, f) };
  // With NATS and the fleet on, an agent may start with no camera and take its cameras from the fleet's settings.
  const fleetCameras = !f.source && Boolean(o.nats) && o.fleet !== false;
  if (!f.source && cameras.length === 0 && !fleetCameras)
    throw new FlagError('--source or a camera (--camera, --cameras; with --nats, also from the fleet) is required');
  if (o.nats) o.natsVia = flagSource(FLAGS, 'nats', argv, env);
  o.natsAuth = natsAuthFromFlags(f);
  if (o.natsAuth.creds) {
    const device = deviceOf(o.natsAuth.creds);
    if (cameras.length && device) {
      // Several cameras: the agent's id is the device, and each camera is one of its own.
      if (o.id !== undefined && o.id !== device) throw new FlagError(`--id ${o.id}: with cameras and the credentials of device ${device}, the agent is ${device} (leave --id out)`); // prettier-ignore
      o.id = device;
    } else if (device) o.id = cameraOfDevice(device, o.id);
  }
  // The outbox is on disk by default for the command (in memory for the library): results survive a restart.
  const stateHome = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  o.outboxDir ??= join(stateHome, 'cascade', 'outbox', o.id ?? hostname());
  return {
    options: o,
    source: f.source,
    cameras,
    fleetCameras,
    look,
    ...(stallS ? { stallMs: stallS * 1000 } : {}),
    ...(f['camera-password-dir'] ? { passwordDir: f['camera-password-dir'] } : {}),
    ...(f['source-password-file'] ? { password: readSecret('source-password-file', f['source-password-file']) } : {}),
    fps,
    limit: numberFlag('limit', f.limit),
    maxFps: numberFlag('max-fps', f['max-fps']),
    repeat: nonNegativeInt('repeat', numberFlag('repeat', f.repeat) ?? 1),
    out: f.out,
    summary: Boolean(f.summary),
  };
}

/** The device a credentials file is for (its user is named by its id, `<site>.<agent>`); none for a role's. */
function deviceOf(creds: string): string | undefined {
  let name: string | undefined;
  try {
    name = credsName(creds);
  } catch (err) {
    throw new FlagError(`--nats-creds: cannot read ${creds}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`); // prettier-ignore
  }
  return name && /^[\w-]+\.[\w-]+$/.test(name) ? name : undefined;
}

/** The lines of a cameras file, comments and blank lines left out. */
function readCamerasFile(file: string): string[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FlagError(`--cameras: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`); // prettier-ignore
  }
  return text
    .split('\n')
    .map((l) => l.replace(/#.*$/, '').trim())
    .filter(Boolean);
}

/**
 * With a device's credentials, the edge id is one of the device's cameras: `--id cam-1` stands for
 * `<site>.<agent>.cam-1`, and an id outside the device is refused here, before the server would refuse its every
 * message.
 */
function cameraOfDevice(device: string, id: string | undefined): string {
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
  if (!args.source) return cameras(args);
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
      openSource(args.source!, {
        size,
        ...args.look,
        ...(args.password !== undefined ? { password: args.password } : {}),
        ...(args.limit ? { limit: args.limit } : {}),
        ...(args.stallMs ? { stallMs: args.stallMs } : {}),
        log: stderrLog,
        signal: stop.signal,
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

type Args = Exclude<ReturnType<typeof parseEdgeArgs>, 'help'>;

/** Several cameras in one agent: each an edge of its own, until stopped (or every camera's file has ended). */
async function cameras(args: Args): Promise<void> {
  const sink = args.out ? createWriteStream(args.out) : process.stdout;
  let host: CameraHost;
  try {
    host = await CameraHost.create(
      {
        edge: args.options,
        ...(args.stallMs ? { stallMs: args.stallMs } : {}),
        ...(args.passwordDir ? { passwordDir: args.passwordDir } : {}),
        look: args.look,
      },
      (r) => sink.write(`${JSON.stringify(r)}\n`),
    );
    await host.start(args.cameras);
    if (args.fleetCameras) host.watchFleet();
  } catch (err) {
    process.stderr.write(`cascade-edge: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
  const stopped = new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve());
  });
  await Promise.race([stopped, host.whenIdle()]);
  await host.shutdown();
  if (sink !== process.stdout)
    await new Promise<void>((resolve) => (sink as NodeJS.WritableStream).end(() => resolve()));
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
