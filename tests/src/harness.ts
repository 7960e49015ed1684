import { startNatsServer } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeOptions, type EdgeResult } from '@cascade/edge';
import {
  elementCount,
  encodeTensor,
  imageTensor,
  toWireTensor,
  v1,
  type InferReply,
  type InferRequestMessage,
} from '@cascade/proto';
import { carriedOutputs, loadModelDir, operatingPoint, type ModelDir } from '@cascade/runtime';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const MODEL = `${REPO}models/ranet-cifar10`;
export const SAMPLES = `${REPO}samples/cifar10-test-1000.bin`;

/** The Python of training/: CASCADE_PYTHON, else the repository's virtual environment, else python3. */
export const PYTHON =
  process.env.CASCADE_PYTHON ?? (existsSync(`${REPO}.venv/bin/python`) ? `${REPO}.venv/bin/python` : 'python3');

/** Where the programs the tests run come from (Debian package names); scripts/setup test installs them all. */
const PACKAGES: Record<string, string> = {
  'nats-server': 'nats-server',
  ffmpeg: 'ffmpeg',
  promtool: 'prometheus',
  prometheus: 'prometheus',
  'docker-compose': 'docker-compose',
  openssl: 'openssl',
  '/usr/bin/chromium': 'chromium',
};

/** Fails at once, naming the program and how to install it, when `program` is not there. */
export function requireProgram(program: string): void {
  const found = program.startsWith('/')
    ? existsSync(program)
    : spawnSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' }).status === 0;
  if (found) return;
  const pkg = PACKAGES[program] ?? program;
  throw new Error(`${program} is not installed: run scripts/setup test (or apt-get install ${pkg}) and try again`);
}

export interface TestNats {
  url: string;
  /** How the server was obtained, for the test log. */
  kind: 'NATS_URL' | 'testcontainers' | 'nats-server';
  stop(): Promise<void>;
}

/**
 * NATS for a test: NATS_URL when set; else a NATS container through testcontainers when a container engine answers
 * (DOCKER_HOST; scripts/test starts podman's API socket and builds the local image CASCADE_NATS_IMAGE, Debian's
 * nats-server: no registry is needed); else a local nats-server. The kind it got is logged, so a run says which.
 */
export async function natsForTests(): Promise<TestNats> {
  const got = (n: TestNats) => (console.log(`NATS for this test file: ${n.kind} (${n.url})`), n);
  if (process.env.NATS_URL) return got({ url: process.env.NATS_URL, kind: 'NATS_URL', stop: async () => undefined });
  if (process.env.DOCKER_HOST) {
    const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
    await getContainerRuntimeClient(); // throws at once when no engine answers
    const container = await new GenericContainer(process.env.CASCADE_NATS_IMAGE ?? 'nats:2.10-alpine')
      .withCommand(['-js', '-sd', '/tmp/jetstream'])
      .withExposedPorts(4222)
      .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
      .start();
    const url = `nats://${container.getHost()}:${container.getMappedPort(4222)}`;
    return got({ url, kind: 'testcontainers', stop: async () => void (await container.stop()) });
  }
  const server = await startNatsServer();
  return got({ url: server.url, kind: 'nats-server', stop: () => server.stop() });
}

/**
 * Polls `probe` every `everyMs` until it gives a truthy value (returned), for at most `ms`; a probe that throws counts
 * as not yet (a container still starting). Throws naming `what` when the time is up.
 */
export async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  ms: number,
  everyMs = 1000,
): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (v) return v;
    if (performance.now() > end) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export function sampleImage(i: number): Uint8Array {
  const raw = readFileSync(SAMPLES);
  return new Uint8Array(raw.subarray(i * 3073 + 1, (i + 1) * 3073));
}

export async function model(): Promise<ModelDir> {
  return loadModelDir(MODEL);
}

/** A well-formed request for stage 1 on: a real image and a carried state of the right shape. */
export function validRequest(m: ModelDir, overrides: Partial<InferRequestMessage> = {}): InferRequestMessage {
  const man = m.manifest;
  const state = carriedOutputs(man, 0).map((spec) => {
    const shape = spec.shape.slice(1);
    const values = new Float32Array(elementCount(shape)).map((_, i) => (i % 7) * 0.1);
    return toWireTensor(spec.name, encodeTensor(values, shape, 'int8'));
  });
  return {
    requestId: `req-${Math.random().toString(36).slice(2)}`,
    edgeId: 'test',
    model: man.name,
    modelVersion: man.version,
    firstStage: 1,
    image: imageTensor(sampleImage(0), man.input.shape),
    state,
    deadlineUnixMs: Date.now() + 30_000,
    thresholds: operatingPoint(man).thresholds,
    ...overrides,
  };
}

export function encodeRequest(r: InferRequestMessage): Uint8Array {
  return v1.InferRequest.encode(r).finish();
}

export function decodeReply(data: Uint8Array): InferReply & { code: string | undefined } {
  const r = v1.InferReply.decode(data);
  return { ...r, code: r.error ? v1.ErrorCode[r.error.code ?? 0] : undefined };
}

/** The value of one sample in Prometheus text format, matched by name and labels (in any order). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/**
 * Runs an edge agent in this process over the first `frames` sample images (its logs dropped) and resolves with its
 * results, in completion order; the agent is closed however the run ends.
 */
export async function runEdge(options: EdgeOptions, frames: number): Promise<EdgeResult[]> {
  const agent = await EdgeAgent.create({ threads: 1, metricsPort: -1, ...options }, () => undefined);
  const results: EdgeResult[] = [];
  try {
    await agent.run(await openSource(SAMPLES, { size: 32, limit: frames }), (r) => results.push(r));
  } finally {
    await agent.shutdown();
  }
  return results;
}

/** Flags of headless Chromium in tests (Debian's package, no GPU, nothing fetched from the network). */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs the `cascade` operator command against `url`; resolves with its exit status and output. */
export async function cascadeCommand(url: string, args: string[]) {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  try {
    const { stdout, stderr } = await promisify(execFile)('node', [`${REPO}packages/ctl/dist/cli.js`, ...args, '--nats', url]); // prettier-ignore
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const references = new Map<string, { exit: number; class: number; tier: string }[]>();

/** Results of `python -m ranet cascade` on the same model, images and operating point (memoised). */
export function pythonReference(
  operatingPoint: string,
  encoding = 'int8',
): { exit: number; class: number; tier: string }[] {
  const key = `${operatingPoint}/${encoding}`;
  if (!references.has(key)) references.set(key, runPython(operatingPoint, encoding));
  return references.get(key)!;
}

function runPython(operatingPoint: string, encoding: string): { exit: number; class: number; tier: string }[] {
  const out = join(mkdtempSync(join(tmpdir(), 'cascade-ref-')), 'ref.jsonl');
  execFileSync(
    PYTHON,
    [
      '-m',
      'ranet',
      'cascade',
      '--model',
      MODEL,
      '--images',
      SAMPLES,
      '--operating-point',
      operatingPoint,
      '--encoding',
      encoding,
      '--predictions',
      out,
    ],
    {
      cwd: join(REPO, 'training'),
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    },
  );
  return readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}
