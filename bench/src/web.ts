#!/usr/bin/env node
// The browser edge's stages against onnxruntime-node on the same machine: the default model's edge stages (0 .. split-1)
// on the first N sample images, one frame at a time, each frame decided by the same code (runEdgeStages), timed per
// frame. Three runtimes: onnxruntime-web (WebAssembly, 1 thread) in headless Chromium, through the page
// (cascade-edge web); onnxruntime-web in Node (the edge's --backend web); onnxruntime-node (native, 1 thread).
// Writes <out>/web.json and .md.
import { serveWeb } from '@cascade/edge/web';
import { runEdgeStages, type RunStage } from '@cascade/edge/local';
import { loadModelDir, operatingPoint, StageSessions, type Backend } from '@cascade/runtime';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { percentile } from './stats.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const FLAGS = {
  frames: { type: 'string', help: 'frames per runtime (default 1000)' },
  chromium: { type: 'string', help: 'Chromium executable (default /usr/bin/chromium)' },
  out: { type: 'string', help: 'output folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const log = (m: string) => process.stderr.write(`[web-bench] ${m}\n`);

interface Timing {
  runtime: string;
  frames: number;
  exited: number;
  frames_per_second: number;
  latency_ms: { p50: number; p99: number; mean: number };
}

function summarise(runtime: string, ms: number[], exited: number): Timing {
  const total = ms.reduce((a, b) => a + b, 0);
  const r2 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    runtime,
    frames: ms.length,
    exited,
    frames_per_second: Math.round((ms.length * 1000) / total),
    latency_ms: { p50: r2(percentile(ms, 0.5)), p99: r2(percentile(ms, 0.99)), mean: r2(total / ms.length) },
  };
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('node bench/dist/web.js [--frames 1000]', FLAGS));
  const n = Number(f.frames ?? 1000);
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const m = model.manifest;
  const split = m.default_split ?? 1;
  const thresholds = [...operatingPoint(m).thresholds];
  const raw = readFileSync(`${REPO}samples/cifar10-test-1000.bin`);
  const images = Array.from({ length: n }, (_, i) => raw.subarray((i % 1000) * 3073 + 1, ((i % 1000) + 1) * 3073));
  const rows: Timing[] = [];

  // Chromium: the page, served as cascade-edge web serves it.
  {
    const { server, url } = await serveWeb({ port: 0, host: '127.0.0.1' });
    const browser = await chromium.launch({
      executablePath: f.chromium ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const page = await browser.newPage();
      await page.goto(url);
      // Runs in the page: its window.cascade (packages/web/src/main.ts).
      type PageGlobals = {
        cascade: { ready: Promise<{ classify(px: Uint8Array): Promise<object> }> };
        navigator: { userAgent: string };
      };
      const web = await page.evaluate(
        async (list) => {
          const g = globalThis as unknown as PageGlobals;
          const edge = await g.cascade.ready;
          for (const px of list.slice(0, 20)) await edge.classify(new Uint8Array(px)); // warm-up
          const ms: number[] = [];
          let exited = 0;
          for (const px of list) {
            const t = performance.now();
            const r = await edge.classify(new Uint8Array(px));
            ms.push(performance.now() - t);
            if ('exited' in r) exited++;
          }
          return { ms, exited, agent: g.navigator.userAgent };
        },
        images.map((x) => [...x]),
      );
      const chrome = /Chrome\/([\d.]+)/.exec(web.agent)?.[1] ?? '';
      rows.push(summarise(`onnxruntime-web (WebAssembly, 1 thread) in Chromium ${chrome}`, web.ms, web.exited));
      log(`chromium: ${JSON.stringify(rows.at(-1))}`);
    } finally {
      await browser.close();
      server.close();
    }
  }

  // Node: the same stages and decision code, through each backend.
  for (const [backend, name] of [
    ['web', 'onnxruntime-web (WebAssembly, 1 thread) in Node'],
    ['node', 'onnxruntime-node (native, 1 thread)'],
  ] as [Backend, string][]) {
    const sessions = await StageSessions.create(model, { first: 0, last: split - 1, backend, threads: 1 });
    const run: RunStage = (s, feeds) => sessions.run(s, feeds);
    for (const px of images.slice(0, 20)) await runEdgeStages(m, split, thresholds, px, run);
    const ms: number[] = [];
    let exited = 0;
    for (const px of images) {
      const t = performance.now();
      const r = await runEdgeStages(m, split, thresholds, px, run);
      ms.push(performance.now() - t);
      if ('exited' in r) exited++;
    }
    await sessions.release();
    rows.push(summarise(name, ms, exited));
    log(`${backend}: ${JSON.stringify(rows.at(-1))}`);
  }

  const native = rows.at(-1)!;
  const result = {
    date: new Date().toISOString(),
    model: `${m.name}@${m.version}`,
    edge_stages: split,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
    rows: rows.map((r) => ({ ...r, vs_onnxruntime_node: Math.round((r.frames_per_second / native.frames_per_second) * 100) / 100 })), // prettier-ignore
  };
  const dir = f.out ?? `${REPO}bench/results`;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/web.json`, `${JSON.stringify(result, null, 1)}\n`);
  writeFileSync(`${dir}/web.md`, [
    `# The browser edge's stages against onnxruntime-node (${result.model}; ${result.machine.cpu}, ${result.machine.cores} cores)`,
    '',
    `Edge stages 0-${split - 1} on ${n} sample images, one frame at a time, each decided by the same code (runEdgeStages); time per frame from its pixels to its decision.`,
    '',
    '| runtime | frames/s | vs onnxruntime-node | latency p50 (ms) | p99 (ms) | exited at the edge |',
    '|---|---|---|---|---|---|',
    ...result.rows.map((r) => `| ${r.runtime} | ${r.frames_per_second} | ${r.vs_onnxruntime_node} | ${r.latency_ms.p50} | ${r.latency_ms.p99} | ${r.exited} of ${r.frames} |`),
    '',
  ].join('\n')); // prettier-ignore
  log(`wrote ${dir}/web.json and .md`);
}

main().then(() => process.exit(0), (err: Error) => {
  process.stderr.write(`web-bench: ${err.stack ?? err.message}\n`);
  process.exit(1);
}); // prettier-ignore
