// Bad networks between a camera and NATS, made by a real fault-injecting TCP proxy (toxiproxy) on loopback: added
// latency, a 1 Mbit/s link, a link that drops for 5 s, and latency past the offload deadline. For each: fallbacks,
// offload latency, accuracy against the samples' labels, and results lost or doubled (both must be 0), with the
// camera kept at its frame rate (slow links fall back, they do not stall the camera).
import { startNatsServer, startWorker, type LocalNats } from '@cascade/demo';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  accuracy,
  fallbacks,
  framesIn,
  inStream,
  intakeFps,
  offloadLatency,
  startEdge,
  whenResults,
  type EdgeRun,
} from './edge-process.js';
import { MODEL } from './harness.js';
import { startToxiproxy, type Proxy, type Toxiproxy } from './toxiproxy.js';

let nats: LocalNats;
let toxi: Toxiproxy;
let link: Proxy;
const stops: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  stops.push(() => nats.stop('SIGKILL'));
  for (const id of ['nw1', 'nw2']) {
    const w = await startWorker({ model: MODEL, nats: nats.url, id, extra: ['--threads', '1'] });
    stops.push(() => w.stop('SIGKILL'));
  }
  toxi = await startToxiproxy();
  stops.push(() => toxi.stop());
  link = await toxi.proxy('camera-link', `127.0.0.1:${nats.port}`);
});
afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => undefined);
});

const FPS = 30;

interface Scenario {
  name: string;
  id: string;
  frames: number;
  /** Toxics on the link for the whole run. */
  setup?: () => Promise<void>;
  /** Something done to the link mid-run. */
  during?: (edge: EdgeRun) => Promise<void>;
}

async function run(s: Scenario) {
  await link.clear();
  await link.setEnabled(true);
  await s.setup?.();
  const edge = startEdge({ url: `nats://${link.listen}`, id: s.id, frames: s.frames, fps: FPS });
  stops.push(edge.kill);
  await s.during?.(edge);
  expect(await edge.exit).toBe(0);
  await link.clear();
  const stream = await inStream(nats.url, s.id);
  const f = fallbacks(edge);
  const fell = Object.values(f).reduce((a, b) => a + b, 0);
  const row = {
    network: s.name,
    frames_in: framesIn(edge),
    results_at_edge: edge.results.length,
    results_in_stream: stream.unique,
    lost: framesIn(edge) - stream.unique,
    duplicated: stream.duplicates + edge.results.length - new Set(edge.results.map((x) => x.r.sequence)).size,
    fallback_rate: Math.round((1000 * fell) / edge.results.length) / 1000,
    fallbacks: f,
    offload_p50_ms: offloadLatency(edge, 0.5),
    offload_p99_ms: offloadLatency(edge, 0.99),
    accuracy: Math.round(10000 * accuracy(edge)) / 10000,
    camera_fps: Math.round(10 * intakeFps(edge)) / 10,
  };
  console.log(`network figures: ${JSON.stringify(row)}`);
  expect(row).toMatchObject({ frames_in: s.frames, results_at_edge: s.frames, results_in_stream: s.frames });
  expect(row.lost).toBe(0);
  expect(row.duplicated).toBe(0);
  // The camera kept its rate, whatever the link did.
  expect(row.camera_fps).toBeGreaterThan(FPS * 0.9);
  expect(row.accuracy).toBeGreaterThan(0.8);
  return row;
}

/** Adds `ms` to the round trip: half on the way up, half on the way down. */
const latency = (ms: number) => async () => {
  await link.toxic('lat-up', 'latency', 'upstream', { latency: ms / 2 });
  await link.toxic('lat-down', 'latency', 'downstream', { latency: ms / 2 });
};

describe('bad networks between the camera and NATS (toxiproxy), 30 frames/s', () => {
  for (const ms of [0, 50, 200]) {
    it(`${ms} ms added round trip: offloads answered, latency grows by about the round trip`, async () => {
      const row = await run({ name: `+${ms} ms round trip`, id: `net-rtt-${ms}`, frames: 300, setup: latency(ms) });
      expect(row.fallbacks.timeout ?? 0).toBe(0);
      expect(row.offload_p50_ms).toBeGreaterThan(ms);
    });
  }

  it('a 1 Mbit/s link: offloads fit (11.9 KB each), nothing lost', async () => {
    const kbps = 125; // toxiproxy's rate is in KB/s
    const row = await run({
      name: '1 Mbit/s link',
      id: 'net-1mbit',
      frames: 300,
      setup: async () => {
        await link.toxic('bw-up', 'bandwidth', 'upstream', { rate: kbps });
        await link.toxic('bw-down', 'bandwidth', 'downstream', { rate: kbps });
      },
    });
    expect(row.offload_p50_ms).not.toBeNull();
  });

  it('the link drops for 5 s: hard frames fall back at once, results are kept and sent when it returns', async () => {
    const row = await run({
      name: 'link down for 5 s',
      id: 'net-drop',
      frames: 450,
      during: async (edge) => {
        await whenResults(edge, 100);
        await link.setEnabled(false);
        await new Promise((r) => setTimeout(r, 5000));
        await link.setEnabled(true);
      },
    });
    expect(row.fallbacks.disconnected ?? 0).toBeGreaterThan(0);
  });

  it('2 s added round trip, past the 1 s offload deadline: hard frames fall back on the deadline, the camera does not stall', async () => {
    const row = await run({ name: '+2,000 ms round trip', id: 'net-rtt-2000', frames: 300, setup: latency(2000) });
    expect(row.fallbacks.timeout ?? 0).toBeGreaterThan(0);
    expect(row.offload_p50_ms).toBeNull();
  });
});
