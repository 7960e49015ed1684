#!/usr/bin/env node
// cascade-edge: run the edge stages over a source; one JSON line per frame on stdout (or --out), a summary on stderr.
import {
  bytesFlag,
  FlagError,
  flagSource,
  isMain,
  MODEL_FLAGS,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  numberFlag,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { createWriteStream } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { EdgeAgent } from './agent.js';
import { DEFAULT_EDGE_OPTIONS as D, type EdgeOptions } from './options.js';
import { DEFAULT_OUTBOX } from './outbox.js';
import { openSource, paced } from './sources.js';
import type { Frame } from './sources.js';
import { formatSummary, SummaryBuilder } from './summary.js';
import { parseWebArgs, serveWeb, WEB_USAGE, type WebOptions } from './web.js';

const FLAGS = {
  ...MODEL_FLAGS,
  source: {
    type: 'string',
    env: 'CASCADE_SOURCE',
    help: 'CIFAR .bin[.gz], image folder, video file, rtsp:// URL or /dev/videoN (required)',
  },
  nats: { type: 'string', env: 'NATS_URL', help: 'NATS server URL(s); without it hard frames fall back locally' },
  ...NATS_AUTH_FLAGS,
  id: {
    type: 'string',
    env: 'CASCADE_EDGE_ID',
    help: 'edge id, e.g. cam-1, or <site>.<camera> behind a site leaf node (default: hostname)',
  },
  split: { type: 'string', env: 'CASCADE_SPLIT', help: 'stages run on the edge (default: the manifest default)' },
  'operating-point': { type: 'string', env: 'CASCADE_OPERATING_POINT', help: 'threshold set from the manifest' },
  thresholds: {
    type: 'string',
    env: 'CASCADE_THRESHOLDS',
    help: 'comma-separated thresholds, one per exit (overrides the operating point)',
  },
  mode: {
    type: 'string',
    env: 'CASCADE_OFFLOAD_MODE',
    help: `offload mode: state, image, or auto (per frame, the cheaper: bytes against cloud compute) (default ${D.mode})`,
  },
  'bytes-weight': {
    type: 'string',
    env: 'CASCADE_BYTES_WEIGHT',
    help: `--mode auto: cost of a kilobyte offloaded (default ${D.bytesWeight})`,
  },
  'compute-weight': {
    type: 'string',
    env: 'CASCADE_COMPUTE_WEIGHT',
    help: `--mode auto: cost of a million MACs in the cloud (default ${D.computeWeight})`,
  },
  encoding: {
    type: 'string',
    env: 'CASCADE_ENCODING',
    help: `state encoding: fp32, fp16 or int8 (default ${D.encoding})`,
  },
  'inference-thread': {
    type: 'string',
    env: 'CASCADE_INFERENCE_THREAD',
    help: `where edge stages run: inline, worker (a worker thread) or auto (inline under 1 ms a frame) (default ${D.inferenceThread})`,
  },
  'state-bits': {
    type: 'string',
    env: 'CASCADE_STATE_BITS',
    help: `int8 state: quantisation levels per channel as bits, 2 to 8; fewer pack smaller and may cost accuracy (default ${D.stateBits})`,
  },
  compression: {
    type: 'string',
    env: 'CASCADE_COMPRESSION',
    help: `packing of offloaded tensors: brotli (lossless) or none (default ${D.compression})`,
  },
  'timeout-ms': { type: 'string', env: 'CASCADE_TIMEOUT_MS', help: `offload deadline (default ${D.timeoutMs})` },
  'max-inflight': {
    type: 'string',
    env: 'CASCADE_MAX_INFLIGHT',
    help: `offloads in flight (default ${D.maxInflight})`,
  },
  pipeline: {
    type: 'string',
    env: 'CASCADE_PIPELINE',
    help: `frames in the edge stages at once (default ${D.pipeline}; 2 trades latency for frames/s)`,
  },
  threads: { type: 'string', env: 'CASCADE_THREADS', help: 'onnxruntime intra-op threads' },
  backend: {
    type: 'string',
    env: 'CASCADE_BACKEND',
    help: 'node (onnxruntime-node) or web (onnxruntime-web, wasm) (default node)',
  },
  fps: { type: 'string', env: 'CASCADE_FPS', help: 'frames per second sampled from video and cameras (default 5)' },
  'metrics-port': {
    type: 'string',
    env: 'CASCADE_METRICS_PORT',
    help: `/metrics port; 0 = any free port, -1 = off (default ${D.metricsPort})`,
  },
  'metrics-host': { type: 'string', env: 'CASCADE_METRICS_HOST', help: `/metrics address (default ${D.metricsHost})` },
  'outbox-dir': {
    type: 'string',
    env: 'CASCADE_OUTBOX_DIR',
    help: 'journal of results the results stream has not acknowledged, kept across restarts; "memory" keeps it in memory (default $XDG_STATE_HOME/cascade/outbox/<id>, else ~/.local/state/...)',
  },
  'outbox-max-bytes': {
    type: 'string',
    env: 'CASCADE_OUTBOX_MAX_BYTES',
    help: `memory the outbox may take (256MiB, 2GiB, ...; about 370 bytes a result); the oldest beyond are dropped and counted (default ${DEFAULT_OUTBOX.maxBytes / 1024 ** 2}MiB)`,
  },
  'outbox-max-count': {
    type: 'string',
    env: 'CASCADE_OUTBOX_MAX_COUNT',
    help: 'most results in the outbox, a limit besides the size (default: none beyond the size)',
  },
  'outbox-max-age-s': {
    type: 'string',
    env: 'CASCADE_OUTBOX_MAX_AGE_S',
    help: `oldest result kept in the outbox, seconds (default ${DEFAULT_OUTBOX.maxAgeMs / 1000})`,
  },
  'shadow-rate': {
    type: 'string',
    env: 'CASCADE_SHADOW_RATE',
    help: `share of frames also finished to the last exit to measure the edge exits' accuracy, 0 to 1 (default ${D.shadowRate})`,
  },
  controller: {
    type: 'string',
    env: 'CASCADE_CONTROLLER',
    help: 'on: move thresholds to hold the accuracy budget at the lowest offload rate, shed load under pressure (default off)',
  },
  'accuracy-budget': {
    type: 'string',
    env: 'CASCADE_ACCURACY_BUDGET',
    help: "accuracy the controller may give up against the last exit, e.g. 0.005 (default: the operating point's max_drop)",
  },
  'latency-target-ms': {
    type: 'string',
    env: 'CASCADE_LATENCY_TARGET_MS',
    help: `offload p95 above which the controller sheds load; 0: not watched (default ${D.latencyTargetMs})`,
  },
  'bandwidth-budget': {
    type: 'string',
    env: 'CASCADE_BANDWIDTH_BUDGET',
    help: 'offload bytes per second the controller keeps under; 0: no limit (default 0)',
  },
  fleet: {
    type: 'string',
    env: 'CASCADE_FLEET',
    help: 'on: watch the fleet settings in NATS and keep an entry in its registry; off: only flags (default on)',
  },
  'control-interval-ms': {
    type: 'string',
    env: 'CASCADE_CONTROL_INTERVAL_MS',
    help: `controller tick (default ${D.controlIntervalMs})`,
  },
  limit: { type: 'string', help: 'stop after N frames' },
  repeat: {
    type: 'string',
    env: 'CASCADE_REPEAT',
    help: 'read the source this many times (0: until stopped; default 1), e.g. to replay files',
  },
  'max-fps': {
    type: 'string',
    env: 'CASCADE_MAX_FPS',
    help: 'take at most N frames per second from any source (paces files; default: no limit)',
  },
  out: { type: 'string', help: 'write result lines to this file instead of stdout' },
  summary: { type: 'boolean', help: 'print a summary table to stderr at the end' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const USAGE = `${usage('cascade-edge --model DIR|NAME@VERSION --source SPEC [options]', FLAGS)}\nAlso: cascade-edge web [options]: serves the browser edge (cascade-edge web --help).\n`;

export function parseEdgeArgs(argv: string[], env: NodeJS.ProcessEnv = process.env) {
  const f = parseFlags(FLAGS, argv, env);
  if (f.help) return 'help' as const;
  if (!f.source) throw new FlagError('--source is required');
  const o: EdgeOptions = { model: f.model ?? '' };
  if (f['model-cache']) o.modelCache = f['model-cache'];
  if (f.nats) {
    o.nats = f.nats;
    o.natsVia = flagSource(FLAGS, 'nats', argv, env);
  }
  o.natsAuth = natsAuthFromFlags(f);
  if (f.id) o.id = f.id;
  if (f['operating-point']) o.operatingPoint = f['operating-point'];
  if (f.mode) o.mode = f.mode as EdgeOptions['mode'];
  if (f.encoding) o.encoding = f.encoding as EdgeOptions['encoding'];
  if (f.compression) o.compression = f.compression as EdgeOptions['compression'];
  const stateBits = numberFlag('state-bits', f['state-bits']);
  if (stateBits !== undefined) o.stateBits = stateBits;
  if (f['inference-thread']) o.inferenceThread = f['inference-thread'] as EdgeOptions['inferenceThread'];
  if (f.backend) o.backend = f.backend as EdgeOptions['backend'];
  if (f.thresholds) o.thresholds = f.thresholds.split(',').map((t, i) => numberFlag(`thresholds[${i}]`, t)!);
  const split = numberFlag('split', f.split);
  if (split !== undefined) o.split = split;
  const timeout = numberFlag('timeout-ms', f['timeout-ms']);
  if (timeout !== undefined) o.timeoutMs = timeout;
  const inflight = numberFlag('max-inflight', f['max-inflight']);
  if (inflight !== undefined) o.maxInflight = inflight;
  const metricsPort = numberFlag('metrics-port', f['metrics-port']);
  if (metricsPort !== undefined) o.metricsPort = metricsPort;
  if (f['metrics-host']) o.metricsHost = f['metrics-host'];
  const pipeline = numberFlag('pipeline', f.pipeline);
  if (pipeline !== undefined) o.pipeline = pipeline;
  const threads = numberFlag('threads', f.threads);
  if (threads !== undefined) o.threads = threads;
  const num = (name: keyof typeof f & string, set: (v: number) => void) => {
    const v = numberFlag(name, f[name] as string | undefined);
    if (v !== undefined) set(v);
  };
  num('shadow-rate', (v) => (o.shadowRate = v));
  num('accuracy-budget', (v) => (o.accuracyBudget = v));
  num('latency-target-ms', (v) => (o.latencyTargetMs = v));
  num('bandwidth-budget', (v) => (o.bandwidthBytesPerS = v));
  num('control-interval-ms', (v) => (o.controlIntervalMs = v));
  num('bytes-weight', (v) => (o.bytesWeight = v));
  num('compute-weight', (v) => (o.computeWeight = v));
  if (f.fleet !== undefined) {
    if (f.fleet !== 'on' && f.fleet !== 'off') throw new FlagError(`--fleet must be on or off, got ${f.fleet}`);
    o.fleet = f.fleet === 'on';
  }
  if (f.controller !== undefined) {
    if (f.controller !== 'on' && f.controller !== 'off')
      throw new FlagError(`--controller must be on or off, got ${f.controller}`);
    o.controller = f.controller === 'on';
  }
  const id = o.id ?? hostname();
  const stateHome = env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
  const dir = f['outbox-dir'] ?? join(stateHome, 'cascade', 'outbox', id);
  const maxCount = numberFlag('outbox-max-count', f['outbox-max-count']);
  const maxBytes = bytesFlag('outbox-max-bytes', f['outbox-max-bytes']);
  const maxAge = numberFlag('outbox-max-age-s', f['outbox-max-age-s']);
  o.outbox = {
    ...(dir === 'memory' ? {} : { dir }),
    ...(maxCount !== undefined ? { maxCount } : {}),
    ...(maxBytes !== undefined ? { maxBytes } : {}),
    ...(maxAge !== undefined ? { maxAgeMs: maxAge * 1000 } : {}),
  };
  return {
    options: o,
    source: f.source,
    fps: numberFlag('fps', f.fps),
    limit: numberFlag('limit', f.limit),
    maxFps: numberFlag('max-fps', f['max-fps']),
    repeat: nonNegativeInt('repeat', numberFlag('repeat', f.repeat) ?? 1),
    out: f.out,
    summary: Boolean(f.summary),
  };
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
