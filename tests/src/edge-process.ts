// A cascade-edge process over the bundled samples, and what the results stream holds for it: shared by the fault,
// cluster and network tests.
import { stopChild, track } from '@cascade/demo';
import { readResults } from '@cascade/edge';
import { connect, type ConnectionOptions } from '@nats-io/transport-node';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MODEL, REPO, SAMPLES } from './harness.js';

export interface EdgeLine {
  edge: string;
  sequence: number;
  outcome: string;
  fallback_reason?: string;
  tier: string;
  /** The class answered, and the true label the source carries. */
  class: number;
  label: number;
  latency_ms: number;
  model_version: string;
}

export interface EdgeRun {
  proc: ChildProcess;
  /** Result lines, with the time each arrived. */
  results: { r: EdgeLine; at: number }[];
  stderr: () => string;
  exit: Promise<number | null>;
  /** SIGKILLs it if it still runs. */
  kill: () => Promise<unknown>;
}

export interface EdgeSpec {
  url: string;
  id: string;
  frames: number;
  fps: number;
  /** Model directory or NAME@VERSION. @default the bundled model */
  model?: string;
  /** More flags (credentials, --repeat, --timeout-ms, ...). */
  extra?: string[];
}

/** Starts cascade-edge replaying the samples at `fps`, its outbox in a new directory, results as JSON lines. */
export function startEdge(spec: EdgeSpec): EdgeRun {
  const outbox = mkdtempSync(join(tmpdir(), 'cascade-edge-outbox-'));
  const args = [
    join(REPO, 'packages/edge/dist/cli.js'),
    ...['--model', spec.model ?? MODEL, '--source', SAMPLES, '--nats', spec.url, '--id', spec.id],
    ...['--limit', String(spec.frames), '--max-fps', String(spec.fps), '--threads', '1'],
    ...['--metrics-port', '-1', '--outbox-dir', outbox, '--summary', ...(spec.extra ?? [])],
  ];
  const proc = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const results: EdgeRun['results'] = [];
  let buf = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      results.push({ r: JSON.parse(buf.slice(0, nl)) as EdgeLine, at: performance.now() });
      buf = buf.slice(nl + 1);
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, results, stderr: () => err, exit, kill: () => stopChild(proc, 'SIGKILL') };
}

/** Frames the edge took in, from its --summary. */
export const framesIn = (e: EdgeRun): number => Number(/^frames +(\d+)/m.exec(e.stderr())?.[1] ?? NaN);

/** Resolves once the edge has printed `n` results. */
export async function whenResults(e: EdgeRun, n: number): Promise<void> {
  while (e.results.length < n) await new Promise((r) => setTimeout(r, 20));
}

export interface StreamCount {
  messages: number;
  unique: number;
  duplicates: number;
}

/** What the results stream holds for one edge: messages, distinct frames, duplicates. */
export async function inStream(url: string, edge: string, auth: Partial<ConnectionOptions> = {}): Promise<StreamCount> {
  const nc = await connect({ servers: url.split(','), ...auth });
  try {
    const seen = new Set<string>();
    let messages = 0;
    await readResults(nc, { edge }, (r) => {
      messages++;
      seen.add(`${r.runId}/${r.sequence}`);
    });
    return { messages, unique: seen.size, duplicates: messages - seen.size };
  } finally {
    await nc.close();
  }
}

/** Fallbacks by reason among the edge's results. */
export function fallbacks(e: EdgeRun): Record<string, number> {
  const reasons: Record<string, number> = {};
  for (const { r } of e.results)
    if (r.outcome === 'fallback') reasons[r.fallback_reason!] = (reasons[r.fallback_reason!] ?? 0) + 1;
  return reasons;
}

/** Share of the edge's answers that match the labels the source carries. */
export function accuracy(e: EdgeRun): number {
  return e.results.filter(({ r }) => r.class === r.label).length / Math.max(1, e.results.length);
}

/**
 * Frames per second the edge took in, from the frames it answered on the spot (exited at an edge exit): a frame
 * waiting for the cloud or its deadline does not hold the camera.
 */
export function intakeFps(e: EdgeRun): number {
  const local = e.results.filter(({ r }) => r.outcome === 'exited');
  const first = local[0]!;
  const last = local.at(-1)!;
  return (last.r.sequence - first.r.sequence) / ((last.at - first.at) / 1000);
}

/** The q-quantile of the offloaded frames' latencies (ms), or null when none was offloaded. */
export function offloadLatency(e: EdgeRun, q: number): number | null {
  const ms = e.results
    .filter(({ r }) => r.outcome === 'offloaded')
    .map(({ r }) => r.latency_ms)
    .sort((a, b) => a - b);
  if (ms.length === 0) return null;
  return ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!;
}
