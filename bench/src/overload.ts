#!/usr/bin/env node
// Overload: one worker (queue limit 8) offered 10x its capacity, and 5,000 requests at once. How fast do OVERLOADED
// replies come back? Writes bench/results/overload.json and .md.
import { startNatsServer, startWorker } from '@cascade/demo';
import { subjects, v1 } from '@cascade/proto';
import { loadModelDir } from '@cascade/runtime';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { percentile, sleep } from './stats.js';
import { realRequests } from './worker.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const log = (m: string) => process.stderr.write(`[overload] ${m}\n`);

interface Tally {
  sent: number;
  by_code: Record<string, number>;
  no_reply: number;
  latency_ms: Record<string, { p50: number; p99: number; n: number }>;
}

async function offer(nc: NatsConnection, subject: string, reqs: Uint8Array[], schedule: number[]): Promise<Tally> {
  const lat = new Map<string, number[]>();
  let noReply = 0;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < schedule.length; i++) {
    const due = start + schedule[i]!;
    if (due - performance.now() > 1) await sleep(due - performance.now());
    const t0 = performance.now();
    pending.push(
      nc.request(subject, reqs[i % reqs.length]!, { timeout: 10_000 }).then(
        (msg) => {
          const r = v1.InferReply.decode(msg.data);
          const code = r.prediction ? 'ok' : v1.ErrorCode[r.error?.code ?? 0]!;
          (lat.get(code) ?? lat.set(code, []).get(code)!).push(performance.now() - t0);
        },
        () => void noReply++,
      ),
    );
  }
  await Promise.all(pending);
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    sent: schedule.length,
    by_code: Object.fromEntries([...lat].map(([k, v]) => [k, v.length])),
    no_reply: noReply,
    latency_ms: Object.fromEntries(
      [...lat].map(([k, v]) => [k, { p50: round(percentile(v, 0.5)), p99: round(percentile(v, 0.99)), n: v.length }]),
    ),
  };
}

async function main(): Promise<void> {
  const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
  const raw = readFileSync(`${REPO}samples/cifar10-test-1000.bin`);
  const images = new Uint8Array(1000 * 3072);
  for (let i = 0; i < 1000; i++) images.set(raw.subarray(i * 3073 + 1, (i + 1) * 3073), i * 3072);
  const reqs = await realRequests(model, images, 256);
  const nats = await startNatsServer();
  const worker = await startWorker({
    model: model.path,
    nats: nats.url,
    id: 'overload',
    extra: ['--threads', '1', '--queue-limit', '8', '--max-batch', '8'],
  });
  const nc = await connect({ servers: nats.url });
  const subject = subjects.infer(model.manifest.name);
  try {
    log('capacity: closed loop, 8 in flight, 3 s');
    let done = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (performance.now() - t0 < 3000) {
          await nc.request(subject, reqs[done % reqs.length]!, { timeout: 10_000 });
          done++;
        }
      }),
    );
    const capacity = (done * 1000) / (performance.now() - t0);
    log(`capacity ${capacity.toFixed(0)} requests/s; offering 10x for 5 s`);
    const rate = 10 * capacity;
    const tenfold = await offer(
      nc,
      subject,
      reqs,
      Array.from({ length: Math.round(rate * 5) }, (_, i) => (i * 1000) / rate),
    );
    await sleep(1000);
    log('5,000 requests at once');
    const burst = await offer(nc, subject, reqs, new Array<number>(5000).fill(0));
    const result = {
      date: new Date().toISOString(),
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length },
      worker: { queue_limit: 8, max_batch: 8, threads: 1 },
      capacity_per_second: Math.round(capacity),
      tenfold: { offered_per_second: Math.round(rate), ...tenfold },
      burst_5000: burst,
    };
    mkdirSync(`${REPO}bench/results`, { recursive: true });
    writeFileSync(`${REPO}bench/results/overload.json`, `${JSON.stringify(result, null, 1)}\n`);
    const row = (name: string, t: Tally) => {
      const o = t.latency_ms.OVERLOADED;
      const ok = t.latency_ms.ok;
      return `| ${name} | ${t.sent} | ${t.by_code.ok ?? 0} | ${t.by_code.OVERLOADED ?? 0} | ${t.no_reply} | ${o ? `${o.p50} / ${o.p99}` : '-'} | ${ok ? `${ok.p50} / ${ok.p99}` : '-'} |`;
    };
    writeFileSync(
      `${REPO}bench/results/overload.md`,
      [
        `# Overload (${result.date.slice(0, 10)}, ${result.machine.cpu}, ${result.machine.cores} cores; client, nats-server and worker share them)`,
        '',
        `One worker, queue limit 8, max batch 8, 1 thread; capacity ${result.capacity_per_second} requests/s (closed loop, 8 in flight).`,
        '',
        '| offered | sent | answered | OVERLOADED | no reply | OVERLOADED latency p50 / p99 (ms) | answered latency p50 / p99 (ms) |',
        '|---|---|---|---|---|---|---|',
        row(`10x capacity (${result.tenfold.offered_per_second}/s for 5 s)`, tenfold),
        row('5,000 at once', burst),
        '',
      ].join('\n'),
    );
    log(`10x: ${JSON.stringify(tenfold.latency_ms)}; burst: ${JSON.stringify(burst.latency_ms)}`);
  } finally {
    await nc.close();
    await worker.stop();
    await nats.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    process.stderr.write(`overload: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
