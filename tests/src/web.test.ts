// The browser edge in headless Chromium: the page (packages/web, built by Vite) loads the bundled model over HTTP,
// checks it, and decides the first 200 sample images with onnxruntime-web as the Node edge (onnxruntime-node) does;
// over NATS's WebSocket listener its hard frames are answered by real workers as the Node edge's are (and the whole
// cascade answers as Python's reference cascade does); a camera
// (Chromium's fake capture device, fed the sample video) streams frames whose results reach the results stream; and
// with the shipped NATS configuration a device's own login works and nothing else does.
import { startNatsServer, startWorker, type WorkerProcess } from '@cascade/demo';
import { readResults, type EdgeResult, type FrameResult } from '@cascade/edge';
import { serveWeb } from '@cascade/edge/web';
import { subjects, v1 } from '@cascade/proto';
import { connect } from '@nats-io/transport-node';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_FLAGS, freePort, MODEL, pythonReference, REPO, requireProgram, runEdge, SAMPLES } from './harness.js';
import { MONITOR_LOGIN, PASSWORDS, startShippedNats, WORKER_LOGIN, type NatsNode } from './topology.js';

const FRAMES = 200;

/** The same bytes the Node edge reads: the sample file's first records, label first. */
const bin = readFileSync(SAMPLES);
const images = Array.from({ length: FRAMES }, (_, i) => [...bin.subarray(i * 3073 + 1, (i + 1) * 3073)]);

/**
 * The Node edge's results for those frames, in frame order (with NATS at `nats`, else no cloud), with the page's
 * request settings: the page's edge id, int8 state and no packing.
 */
async function nodeEdge(nats?: string): Promise<EdgeResult[]> {
  const node = await runEdge({ model: MODEL, ...(nats ? { nats } : {}), id: 'web-1', compression: 'none' }, FRAMES);
  return node.sort((a, b) => a.sequence - b.sequence);
}

/** The built page at / and the repository's models at /models/, as `cascade-edge web` serves them. */
const servePage = () => serveWeb({ port: 0, host: '127.0.0.1', page: join(REPO, 'packages/web/dist'), models: join(REPO, 'models') }); // prettier-ignore

/** A nats-server with a WebSocket listener, workers on it, the page served, and Chromium (`args` added). */
async function cloudAndPage(workerIds: string[], args: string[] = []) {
  requireProgram('/usr/bin/chromium');
  const wsPort = await freePort();
  const nats = await startNatsServer({ extraConfig: `websocket { listen: "127.0.0.1:${wsPort}", no_tls: true }` });
  const workers: WorkerProcess[] = [];
  for (const id of workerIds)
    workers.push(await startWorker({ model: MODEL, nats: nats.url, id, extra: ['--threads', '1'] }));
  const served = await servePage();
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: [...CHROMIUM_FLAGS, ...args] });
  return {
    nats,
    wsUrl: `ws://127.0.0.1:${wsPort}`,
    workers,
    served,
    browser,
    async stop() {
      await browser.close();
      served.server.close();
      for (const w of workers) await w.stop();
      await nats.stop();
    },
  };
}

describe('browser edge - the page in headless Chromium', () => {
  let browser: Browser;
  let served: { server: Server; url: string };
  beforeAll(async () => {
    requireProgram('/usr/bin/chromium');
    served = await servePage();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  });
  afterAll(async () => {
    await browser?.close();
    served?.server.close();
  });

  it(`decides the first ${FRAMES} sample images as the Node edge does: same exit, class, and frames that exit`, async () => {
    const node = await nodeEdge();
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(served.url);
    await page.waitForFunction(() => document.getElementById('status')?.dataset.state !== 'loading', undefined, {
      timeout: 60_000,
    });
    expect(await page.textContent('#status')).toMatch(/ranet-cifar10@\w+: edge stages 0-0 loaded/);
    const browserDecisions = await page.evaluate(async (imgs) => {
      const edge = await window.cascade.ready;
      const out = [];
      for (const px of imgs) {
        const r = await edge.classify(new Uint8Array(px));
        const a = 'exited' in r ? r.exited : r.best;
        out.push({ exit: a.exit, class: a.classIndex, exited: 'exited' in r });
      }
      return out;
    }, images);
    expect(errors).toEqual([]);
    const nodeDecisions = node.map((r) => ({ exit: r.exit, class: r.class, exited: r.outcome === 'exited' }));
    expect(browserDecisions).toEqual(nodeDecisions);
    const exited = nodeDecisions.filter((d) => d.exited).length;
    console.log(`browser edge: ${FRAMES} frames decided as the Node edge did; ${exited} exited at the edge, ${FRAMES - exited} would be offloaded`); // prettier-ignore
    expect(exited).toBeGreaterThan(FRAMES / 2);
  }, 120_000);

  it('refuses a model whose stage does not match its manifest, naming the file', async () => {
    const page = await browser.newPage();
    // A bad copy on the web server: the model's stage 0 answered with another model's file.
    await page.route('**/models/ranet-cifar10/stage-0.onnx', (route) =>
      route.fulfill({ body: readFileSync(join(REPO, 'models/ranet-cifar10-small/stage-0.onnx')) }),
    );
    await page.goto(served.url);
    await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'failed', undefined, {
      timeout: 60_000,
    });
    expect(await page.textContent('#status')).toMatch(/stage-0.onnx does not match its sha256 in the manifest/);
  }, 60_000);
});

describe('browser edge - offloading to real workers over NATS WebSocket', () => {
  let env: Awaited<ReturnType<typeof cloudAndPage>>;
  beforeAll(async () => void (env = await cloudAndPage(['w-web-1', 'w-web-2'])), 60_000);
  afterAll(() => env?.stop());

  it("hard frames are answered by the workers as the Node edge's are; without workers they fall back on the page", async () => {
    const node = await nodeEdge(env.nats.url);
    const page = await env.browser.newPage();
    await page.goto(`${env.served.url}?nats=${encodeURIComponent(env.wsUrl)}&id=web-1`);
    await page.waitForFunction(() => document.getElementById('cloud')?.dataset.state === 'connected', undefined, {
      timeout: 60_000,
    });
    const run = (imgs: number[][]) =>
      page.evaluate(async (list) => {
        const edge = await window.cascade.ready;
        const out = [];
        for (const px of list) out.push(await edge.process(new Uint8Array(px)));
        return out;
      }, imgs);
    const web = await run(images);
    const offloaded = web.filter((r) => r.outcome === 'offloaded');
    console.log(`browser edge over WebSocket: ${offloaded.length} of ${FRAMES} offloaded, each result field by field as the Node edge's`); // prettier-ignore
    expect(web.filter((r) => r.outcome === 'fallback')).toEqual([]);
    // Both run frames through one frame path (@cascade/edge/path): every field the same, but for what differs by
    // nature (the frame's name, its ground truth, which only the Node source knows, latency, which worker
    // answered) and the confidence, computed by two runtimes (onnxruntime-web and -node).
    // The size of an offload but for 2 bytes: a frame drawn at random for the accuracy estimate asks for every exit
    // (the all_exits flag), and each edge draws its own.
    const fields = (r: EdgeResult) => {
      const { frame: _f, label: _l, latency_ms: _t, worker, confidence: _c, offload_bytes: bytes, ...rest } = r;
      return { ...rest, worker: worker === undefined ? 'none' : 'a worker', offloaded: bytes > 0 };
    };
    web.forEach((r, i) => {
      const n = node[i]!;
      expect(fields(r), `frame ${i}`).toEqual(fields(n));
      expect(Math.abs(r.confidence - n.confidence), `frame ${i}: confidence`).toBeLessThan(1e-4);
      expect(Math.abs(r.offload_bytes - n.offload_bytes), `frame ${i}: offload bytes`).toBeLessThanOrEqual(2);
    });
    expect(new Set(offloaded.map((r) => r.worker))).toEqual(new Set(['w-web-1', 'w-web-2']));
    // And as Python's reference cascade (python -m ranet cascade: the same model, images and operating point).
    const op = (JSON.parse(readFileSync(join(MODEL, 'manifest.json'), 'utf8')) as { default_operating_point: string })
      .default_operating_point;
    const python = pythonReference(op).slice(0, FRAMES);
    expect(web.map((r) => [r.exit, r.class, r.tier])).toEqual(python.map((p) => [p.exit, p.class, p.tier]));

    // No workers: hard frames are answered on the page, with the reason, and the page says the cloud is not answering.
    for (const w of env.workers.splice(0)) await w.stop();
    const alone = await run(images.slice(0, 40));
    const hard = alone.filter((r) => r.outcome !== 'exited');
    expect(hard.length).toBeGreaterThan(0);
    expect(hard.every((r) => r.outcome === 'fallback' && r.fallback_reason === 'no_responders' && r.tier === 'edge')).toBe(true); // prettier-ignore
    expect(await page.textContent('#cloud')).toMatch(/no worker answered/);
  }, 120_000);
});

describe('browser edge - a camera (Chromium fake capture from the sample video)', () => {
  let env: Awaited<ReturnType<typeof cloudAndPage>>;
  const y4m = join(tmpdir(), `cascade-camera-${process.pid}.y4m`);
  beforeAll(async () => {
    requireProgram('ffmpeg');
    // The sample video (32x32, 5 frames/s) as a camera would see it: 256x256, the first 40 s, in Chromium's format.
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-i', join(REPO, 'samples/cifar10-test-1000.mp4'), '-t', '40',
      '-vf', 'scale=256:256:flags=neighbor', '-pix_fmt', 'yuv420p', y4m]); // prettier-ignore
    const camera = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-video-capture=${y4m}`]; // prettier-ignore
    env = await cloudAndPage(['w-cam-1', 'w-cam-2'], camera);
  }, 60_000);
  afterAll(async () => {
    await env?.stop();
    rmSync(y4m, { force: true });
  });

  it('camera frames flow through the page; their results reach the results stream under its edge id; hard frames go to the workers, and fall back on the page without them', async () => {
    const nc = await connect({ servers: env.nats.url });
    const got: FrameResult[] = [];
    nc.subscribe(subjects.results('web-cam'), { callback: (_, m) => void got.push(v1.FrameResult.decode(m.data)) });
    await nc.flush();
    const until = async (what: string, ok: () => boolean, ms = 60_000) => {
      const end = Date.now() + ms;
      while (!ok()) {
        if (Date.now() > end) throw new Error(`waited ${ms} ms for ${what}: ${got.length} results`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const page = await env.browser.newPage({ viewport: { width: 900, height: 700 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${env.served.url}?nats=${encodeURIComponent(env.wsUrl)}&id=web-cam&camera=on&fps=20`);
    await until('offloaded frames from the camera', () => got.filter((r) => r.outcome === 'offloaded').length >= 5);
    const before = await page.screenshot();
    expect(await page.getAttribute('#start', 'data-state')).toBe('running');
    expect(await page.textContent('#stats')).toMatch(/frames \d+, [\d.]+\/s; sent to the cloud [\d.]+ %/);
    const served1 = got.filter((r) => r.outcome === 'offloaded');
    expect(served1.every((r) => r.tier === 'cloud')).toBe(true);
    expect(got.every((r) => r.edgeId === 'web-cam' && r.frameId.startsWith('camera#'))).toBe(true);
    expect(new Set(got.map((r) => r.runId)).size).toBe(1);

    // The workers stop: the camera's hard frames are answered on the page, and the page says so.
    for (const w of env.workers.splice(0)) await w.stop();
    const stoppedAt = got.length;
    await until('fallbacks after the workers stopped', () =>
      got.slice(stoppedAt).some((r) => r.outcome === 'fallback'),
    );
    await page.waitForFunction(() => document.getElementById('cloud')?.dataset.state === 'unreachable');
    const after = await page.screenshot();
    expect(Buffer.compare(before, after)).not.toBe(0);
    expect(await page.textContent('#cloud')).toMatch(/no worker answered \(no_responders\)/);
    const fallbacks = got.slice(stoppedAt).filter((r) => r.outcome === 'fallback');
    expect(fallbacks.every((r) => r.tier === 'edge' && r.error === 'no_responders')).toBe(true);

    // Every result reached the stream once: sequences 1..n without a gap or a repeat (the last few may be in flight).
    await page.close();
    await new Promise((r) => setTimeout(r, 500));
    const stored: FrameResult[] = [];
    await readResults(nc, { edge: 'web-cam' }, (r) => void stored.push(r));
    const seqs = stored.map((r) => Number(r.sequence)).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(seqs.length).toBeGreaterThanOrEqual(got.length);
    expect(errors).toEqual([]);
    console.log(`browser camera: ${seqs.length} frames stored, ${served1.length} offloaded before the workers stopped, ${fallbacks.length} fallbacks after`); // prettier-ignore
    await nc.close();
  }, 180_000);
});

describe('browser edge - with the shipped NATS configuration (deploy/nats/nats.conf)', () => {
  let browser: Browser;
  let served: { server: Server; url: string };
  let server: NatsNode;
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    requireProgram('/usr/bin/chromium');
    server = await startShippedNats('nats.conf');
    for (const id of ['w-ship-1', 'w-ship-2'])
      workers.push(await startWorker({ model: MODEL, nats: server.url, id, extra: ['--threads', '1', ...WORKER_LOGIN] })); // prettier-ignore
    served = await servePage();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    served?.server.close();
    for (const w of workers) await w.stop();
    await server?.stop();
  });

  const open = async (query: string) => {
    const page = await browser.newPage();
    await page.goto(`${served.url}?nats=${encodeURIComponent(server.wsUrl!)}&${query}`);
    await page.waitForFunction(() => !['', 'connecting', 'none'].includes(document.getElementById('cloud')!.dataset.state ?? '')); // prettier-ignore
    return page;
  };
  const runAll = (page: Page, n: number) =>
    page.evaluate(
      async (list) => {
        const edge = await window.cascade.ready;
        const out = [];
        for (const px of list) out.push(await edge.process(new Uint8Array(px)));
        await edge.close(10_000); // sends what results are pending
        return out;
      },
      images.slice(0, n),
    );
  const stored = async (edge: string) => {
    const nc = await connect({ servers: server.url, ...MONITOR_LOGIN });
    const got: FrameResult[] = [];
    await readResults(nc, { edge }, (r) => void got.push(r));
    await nc.close();
    return got;
  };

  it("a device's own login (web-1) offloads over WebSocket and stores its results; the wrong id or password gets nothing", async () => {
    const page = await open(`id=web-1&user=web-1&pass=${PASSWORDS.CASCADE_EDGE_WEB_1_PASSWORD}`);
    expect(await page.getAttribute('#cloud', 'data-state')).toBe('connected');
    const web = await runAll(page, FRAMES);
    expect(web.filter((r) => r.outcome === 'offloaded')).toHaveLength(17);
    expect(web.filter((r) => r.outcome === 'fallback')).toEqual([]);
    const mine = await stored('web-1');
    expect(mine.map((r) => Number(r.sequence)).sort((a, b) => a - b)).toEqual(web.map((r) => r.sequence));

    // web-1's login used with another id: its inbox and results subject are not web-1's, so nothing goes through.
    const other = await open(`id=web-2&user=web-1&pass=${PASSWORDS.CASCADE_EDGE_WEB_1_PASSWORD}&`);
    const denied = await runAll(other, 40);
    const hard = denied.filter((r) => r.outcome !== 'exited');
    expect(hard.length).toBeGreaterThan(0);
    expect(hard.every((r) => r.outcome === 'fallback')).toBe(true);
    expect(await stored('web-2')).toEqual([]);

    const wrong = await open('id=web-1&user=web-1&pass=wrong');
    expect(await wrong.getAttribute('#cloud', 'data-state')).toBe('unreachable');
    expect(await wrong.textContent('#cloud')).toMatch(/cannot connect .*every frame is answered here/);
  }, 120_000);
});
