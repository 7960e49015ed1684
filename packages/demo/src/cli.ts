#!/usr/bin/env node
// cascade-demo: nats-server + cloud workers + one edge agent over the bundled CIFAR-10 samples, then a summary.
import { formatSummary } from '@cascade/edge';
import { FlagError, isMain, numberFlag, parseFlags, usage, type Flag } from '@cascade/service';
import { exitStatus, redactSecrets } from '@cascade/proto';
import { fileURLToPath } from 'node:url';
import { runDemo, type DemoOptions } from './demo.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

const FLAGS = {
  model: { type: 'string', env: 'CASCADE_MODEL', help: 'model directory (default models/ranet-cifar10)' },
  images: { type: 'string', help: 'CIFAR-10 binary file (default samples/cifar10-test-1000.bin)' },
  workers: { type: 'string', help: 'cloud worker processes (default 2)' },
  'operating-point': { type: 'string', help: "threshold set from the manifest (default: the manifest's default)" },
  mode: { type: 'string', help: 'offload mode: state or image (default state)' },
  encoding: { type: 'string', help: 'state encoding: fp32, fp16 or int8 (default int8)' },
  limit: { type: 'string', help: 'use only the first N images' },
  nats: { type: 'string', env: 'NATS_URL', help: 'use this NATS server instead of starting one' },
  live: {
    type: 'string',
    help: 'serve the live view on this port (0: any free port) and replay the images until Ctrl-C',
  },
  fps: { type: 'string', help: 'frames per second fed to the edge (default: as fast as it goes; 20 with --live)' },
  json: { type: 'boolean', help: 'print the summary as one JSON object' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const USAGE = usage('cascade-demo [options]', FLAGS);

async function main(): Promise<void> {
  let o: DemoOptions;
  let json = false;
  try {
    const f = parseFlags(FLAGS, process.argv.slice(2));
    if (f.help) {
      process.stdout.write(USAGE);
      return;
    }
    json = Boolean(f.json);
    o = {
      model: f.model ?? `${REPO}models/ranet-cifar10`,
      images: f.images ?? `${REPO}samples/cifar10-test-1000.bin`,
      workers: numberFlag('workers', f.workers) ?? 2,
      log: (msg) => process.stderr.write(`${msg}\n`),
    };
    if (f['operating-point']) o.operatingPoint = f['operating-point'];
    if (f.mode) o.mode = f.mode as DemoOptions['mode'];
    if (f.encoding) o.encoding = f.encoding as DemoOptions['encoding'];
    if (f.nats) o.nats = f.nats;
    const live = numberFlag('live', f.live);
    if (live !== undefined) o.livePort = live;
    const fps = numberFlag('fps', f.fps);
    if (fps !== undefined) {
      if (!(fps > 0)) throw new FlagError(`--fps must be > 0, got ${fps}`);
      o.fps = fps;
    }
    // Ctrl-C or SIGTERM ends the run after the frame in progress; what was started is stopped and summarised.
    const stop = new AbortController();
    for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());
    o.signal = stop.signal;
    const limit = numberFlag('limit', f.limit);
    if (limit !== undefined) o.limit = limit;
  } catch (err) {
    process.stderr.write(`cascade-demo: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  try {
    const { report } = await runDemo(o);
    if (json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      const exp = report.expected;
      const extra: [string, string][] = [];
      if (report.results_stored !== null) extra.push(['results in the results stream', String(report.results_stored)]);
      if (exp.accuracy !== null) {
        extra.push([
          'manifest (whole test set)',
          `accuracy ${(exp.accuracy * 100).toFixed(2)} %, offload rate ${((exp.offload_rate ?? 0) * 100).toFixed(2)} %`,
        ]);
      }
      process.stdout.write(
        `${report.model} ${report.version}: split ${report.split}, ${report.mode} mode (${report.encoding}), ` +
          `${report.workers} workers, ${report.wall_seconds.toFixed(1)} s\n${formatSummary(report, extra)}\n`,
      );
    }
  } catch (err) {
    process.stderr.write(`cascade-demo: ${redactSecrets((err as Error).message)}\n`);
    process.exit(exitStatus(err));
  }
}

if (isMain(import.meta.url)) void main();
