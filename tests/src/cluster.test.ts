// Past one machine, with real processes on loopback: a cloud cluster of three nats-servers (deploy/nats/cluster.conf)
// with the results stream replicated three ways, and a camera site's nats-server joined to it as a leaf node
// (deploy/nats/site.conf) through toxiproxy, so that its link can be cut. Every frame must have exactly one result at
// the edge and in the stream, whatever fails.
import { startWorker, type WorkerProcess } from '@cascade/demo';
import { RESULTS_STREAM } from '@cascade/proto';
import { ensureResultsStream } from '@cascade/service';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterEach, describe, expect, it } from 'vitest';
import { fallbacks, framesIn, inStream, startEdge, whenResults, type EdgeRun } from './edge-process.js';
import { MODEL } from './harness.js';
import {
  MONITOR_LOGIN,
  PASSWORDS,
  SITE_CAMERA_PASSWORD,
  startCloud,
  startSite,
  WORKER_LOGIN,
  type Cloud,
  type CloudOptions,
  type NatsNode,
} from './topology.js';
import { startToxiproxy, type Proxy } from './toxiproxy.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
});

async function cloud(options: CloudOptions = {}): Promise<Cloud> {
  const c = await startCloud(options);
  cleanup.push(() => c.stop());
  return c;
}

async function workers(urls: string): Promise<WorkerProcess[]> {
  const ws: WorkerProcess[] = [];
  for (const id of ['cw1', 'cw2']) {
    const extra = ['--threads', '1', '--results-replicas', '3', ...WORKER_LOGIN];
    const w = await startWorker({ model: MODEL, nats: urls, id, extra });
    cleanup.push(() => w.stop('SIGKILL'));
    ws.push(w);
  }
  return ws;
}

function edge(spec: Parameters<typeof startEdge>[0]): EdgeRun {
  const e = startEdge(spec);
  cleanup.push(e.kill);
  return e;
}

async function monitor(urls: string): Promise<NatsConnection> {
  const nc = await connect({ servers: urls.split(','), ...MONITOR_LOGIN });
  cleanup.push(() => nc.close());
  return nc;
}

interface StreamInfo {
  config: { num_replicas: number };
  state: { messages: number };
  cluster?: { leader?: string; replicas?: { name: string; current: boolean }[] };
}

/** The results stream's configuration, state and cluster, from the JetStream API. */
async function streamInfo(nc: NatsConnection): Promise<StreamInfo> {
  const m = await nc.request(`$JS.API.STREAM.INFO.${RESULTS_STREAM.name}`, undefined, { timeout: 2000 });
  return m.json<StreamInfo>();
}

/** The results stream's leader and its replicas once all three copies are current. */
async function replicatedStream(nc: NatsConnection): Promise<{ leader: string; replicas: number }> {
  for (let i = 0; ; i++) {
    const info = await streamInfo(nc).catch(() => undefined);
    const current = info?.cluster?.replicas?.filter((r) => r.current).length ?? 0;
    if (info?.cluster?.leader && info.config.num_replicas === 3 && current === 2)
      return { leader: info.cluster.leader, replicas: info.config.num_replicas };
    if (i > 150) throw new Error(`results stream not replicated 3 ways in 30 s: ${JSON.stringify(info?.cluster)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The node a client named `name` is connected to (GET /connz on each node). */
async function nodeOf(c: Cloud, name: string): Promise<NatsNode> {
  for (const n of c.nodes) {
    const z = (await fetch(`http://127.0.0.1:${n.monitorPort}/connz`).then((r) => r.json())) as {
      connections?: { name?: string }[];
    };
    if (z.connections?.some((x) => x.name === name)) return n;
  }
  throw new Error(`no node has a client named ${name}`);
}

/** Milliseconds between each `from` event in the edge's log and the next `to` event. */
function gaps(e: EdgeRun, from: string, to: string): number[] {
  const events = e
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { t: string; event: string });
  const out: number[] = [];
  let start: number | undefined;
  for (const ev of events) {
    if (ev.event === from) start ??= Date.parse(ev.t);
    else if (ev.event === to && start !== undefined) {
      out.push(Date.parse(ev.t) - start);
      start = undefined;
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CAM_1 = ['--nats-user', 'cam-1', '--nats-password', PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD];

describe('a cloud cluster of three nats-servers', () => {
  it('the results stream is replicated 3 ways; a node SIGKILLed and restarted, twice (the stream leader, then the edge’s node): every frame answered once and stored once', async () => {
    const c = await cloud();
    const ws = await workers(c.urls);
    const mon = await monitor(c.urls);
    const before = await replicatedStream(mon);
    expect(ws[0]!.log() + ws[1]!.log()).toMatch(/"event":"results_stream_created".*"replicas":3/);
    const frames = 1000;
    const e = edge({ url: c.urls, id: 'cam-1', frames, fps: 35, extra: CAM_1 });
    const kills: { node: string; role: string; at_result: number; leader_after?: string }[] = [];
    const killAndRestart = async (n: NatsNode, role: string) => {
      kills.push({ node: n.name, role, at_result: e.results.length });
      await n.stop('SIGKILL');
      await sleep(5000);
      await n.restart();
      await n.healthy();
      kills.at(-1)!.leader_after = (await replicatedStream(mon)).leader;
    };
    await whenResults(e, 200);
    const leader = c.nodes.find((n) => n.name === before.leader)!;
    await killAndRestart(leader, 'results stream leader');
    await whenResults(e, 600);
    await killAndRestart(await nodeOf(c, 'cascade-edge cam-1'), 'the edge’s node');
    const back = performance.now();
    expect(await e.exit).toBe(0);
    const stream = await inStream(c.urls, 'cam-1', MONITOR_LOGIN);
    const stored = (await streamInfo(mon)).state.messages;
    const row = {
      fault: 'a cloud node SIGKILLed for 5 s, twice',
      stream_messages: stored,
      kills,
      frames_in: framesIn(e),
      results_at_edge: e.results.length,
      results_in_stream: stream.unique,
      duplicates: stream.duplicates,
      fallbacks: fallbacks(e),
      // How long the edge was without a server, and how long its results waited for a stream leader.
      edge_reconnect_ms: gaps(e, 'nats_disconnected', 'nats_reconnected'),
      results_held_ms: gaps(e, 'results_publish_failed', 'results_publish_recovered'),
    };
    console.log(`cluster figures: ${JSON.stringify(row)}`);
    expect(before.replicas).toBe(3);
    expect(row).toMatchObject({ frames_in: frames, results_at_edge: frames, results_in_stream: frames, duplicates: 0 });
    expect(new Set(e.results.map((x) => x.r.sequence)).size).toBe(frames);
    // Offloading went on after the second failover.
    expect(e.results.filter((x) => x.at > back && x.r.tier === 'cloud').length).toBeGreaterThan(0);
  }, 240_000);

  it('an existing stream with another number of copies is left as it is, and the worker says so', async () => {
    const c = await cloud();
    const mon = await monitor(c.urls);
    expect(await ensureResultsStream(mon)).toMatchObject({ created: true, replicas: 1, updated: [] });
    const [w] = await workers(c.urls);
    const log = () => w!.log();
    for (let i = 0; !log().includes('results_stream_'); i++) {
      if (i > 100) throw new Error(`the worker said nothing of the results stream:\n${log()}`);
      await sleep(100);
    }
    expect(log()).toMatch(/"event":"results_stream_replicas_differ".*"replicas":1,"wanted":3/);
    expect(await ensureResultsStream(mon)).toMatchObject({ created: false, replicas: 1, updated: [] });
  }, 60_000);
});

describe('a camera site as a leaf node of the cloud cluster', () => {
  it('the leaf link cut for 60 s mid-run: the edge answers every frame locally meanwhile, and every result reaches the cloud stream exactly once', async () => {
    // The site reaches each cloud node's leaf port through a proxy, which is also the address the node advertises.
    const toxi = await startToxiproxy();
    cleanup.push(() => toxi.stop());
    const links: Proxy[] = [];
    const c = await cloud({
      leafAddress: async (i, port) => (links[i] = await toxi.proxy(`site-a-link-${i}`, `127.0.0.1:${port}`)).listen,
    });
    await workers(c.urls);
    const mon = await monitor(c.urls);
    await replicatedStream(mon);
    const site = await startSite(
      'site-a',
      links.map((l) => l.listen),
    );
    cleanup.push(() => site.stop('SIGKILL'));
    const frames = 1000;
    const e = edge({
      url: site.url,
      id: 'site-a.agent-1.cam-1',
      frames,
      fps: 12,
      extra: ['--nats-user', 'camera', '--nats-password', SITE_CAMERA_PASSWORD],
    });
    await whenResults(e, 120);
    const cutAt = e.results.length;
    await Promise.all(links.map((l) => l.setEnabled(false)));
    const cut = performance.now();
    await sleep(60_000);
    const duringCut = e.results.filter((x) => x.at > cut + 2000);
    await Promise.all(links.map((l) => l.setEnabled(true)));
    const restored = performance.now();
    expect(await e.exit).toBe(0);
    const rejoinedAfter = e.results.find((x) => x.at > restored && x.r.tier === 'cloud');
    const stream = await inStream(c.urls, 'site-a.agent-1.cam-1', MONITOR_LOGIN);
    const row = {
      fault: 'site leaf link cut for 60 s',
      frames_in: framesIn(e),
      cut_at_result: cutAt,
      results_at_edge: e.results.length,
      results_in_stream: stream.unique,
      duplicates: stream.duplicates,
      fallbacks: fallbacks(e),
      answered_during_cut: duringCut.length,
      offloading_again_after_s: rejoinedAfter ? Math.round((rejoinedAfter.at - restored) / 100) / 10 : null,
    };
    console.log(`cluster figures: ${JSON.stringify(row)}`);
    expect(row).toMatchObject({ frames_in: frames, results_at_edge: frames, results_in_stream: frames, duplicates: 0 });
    // The camera kept its rate while the link was down (12 frames/s for 58 s), every hard frame answered locally.
    expect(duringCut.length).toBeGreaterThan(12 * 50);
    expect(duringCut.every((x) => x.r.tier === 'edge')).toBe(true);
    expect(row.fallbacks.no_responders ?? 0).toBeGreaterThan(0);
    expect(rejoinedAfter).toBeDefined();
  }, 240_000);

  it('a site reaches the inference service and publishes its own results, nothing else; its login works only as a leaf node', async () => {
    const c = await cloud();
    await workers(c.urls);
    const site = await startSite(
      'site-a',
      c.nodes.map((n) => `127.0.0.1:${n.leafPort}`),
    );
    cleanup.push(() => site.stop('SIGKILL'));
    // The site's cloud login is for its leaf node only.
    await expect(
      connect({ servers: c.nodes[0]!.url, user: 'site-a', pass: PASSWORDS.CASCADE_SITE_SITE_A_PASSWORD }),
    ).rejects.toThrow(/Authorization/i);
    const mon = await monitor(c.urls);
    const seen: string[] = [];
    const spy = mon.subscribe('cascade.v1.results.>', {
      callback: (_e, m) => void seen.push(`${m.subject} ${m.string()}`),
    });
    cleanup.push(async () => spy.unsubscribe());
    await mon.flush();
    const cam = await connect({
      servers: site.url,
      user: 'camera',
      pass: SITE_CAMERA_PASSWORD,
      inboxPrefix: '_INBOX.site-a.agent-1.cam-9',
    });
    cleanup.push(() => cam.close());
    // Inference requests reach the workers and their replies come back (a malformed request gets a coded error).
    const reply = await cam.request('cascade.v1.infer.ranet-cifar10', new Uint8Array([1, 2, 3]), { timeout: 5000 });
    expect(reply.data.length).toBeGreaterThan(0);
    // Its own results leave the site. The monitor's interest reaches the site's leaf node through the cluster some time
    // after it subscribed, and a leaf node drops what no one is known to want, so publish until the first one arrives.
    const own = 'cascade.v1.results.site-a.agent-1.cam-9';
    const deadline = performance.now() + 20_000;
    for (let i = 0; !seen.some((x) => x.includes(' probe-')); i += 1) {
      expect(performance.now(), 'the monitor never heard the site: interest did not reach its leaf node').toBeLessThan(
        deadline,
      );
      cam.publish(own, `probe-${i}`);
      await cam.flush();
      await sleep(200);
    }
    // Now that the leaf node knows the monitor's interest: another site's or a cloud camera's subject does not leave,
    // and the marker published after them arrives alone (one publisher's messages keep their order).
    for (const subject of ['cascade.v1.results.site-b.agent-1.cam-1', 'cascade.v1.results.cam-1'])
      cam.publish(subject, 'forbidden');
    cam.publish(own, 'marker');
    await cam.flush();
    // A camera at the site listening for a cloud camera's replies (its site login allows _INBOX.>) hears nothing: the
    // cloud sends a site only what its leaf login may subscribe to.
    const heard: string[] = [];
    cam.subscribe('_INBOX.cam-1.>', { callback: (_e, m) => void heard.push(m.subject) });
    await cam.flush();
    await sleep(300);
    const cloudCam = await connect({
      servers: c.urls.split(','),
      user: 'cam-1',
      pass: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD,
      inboxPrefix: '_INBOX.cam-1',
    });
    cleanup.push(() => cloudCam.close());
    await cloudCam.request('cascade.v1.infer.ranet-cifar10', new Uint8Array([1]), { timeout: 5000 });
    await sleep(500);
    expect(seen.filter((x) => !x.includes(' probe-'))).toEqual([`${own} marker`]);
    expect(heard).toEqual([]);
  }, 60_000);
});

/** What a peer speaking plain text gets from a port: the server's INFO, then whether it answered a PING. */
async function plainText(port: number): Promise<{ info: { tls_required?: boolean }; answered: boolean }> {
  const { createConnection } = await import('node:net');
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let text = '';
    let info: { tls_required?: boolean } | undefined;
    const done = () => {
      socket.destroy();
      resolve({ info: info ?? {}, answered: /PONG/.test(text.slice(text.indexOf('\n') + 1)) });
    };
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (!info && text.includes('\r\n')) {
        info = JSON.parse(text.slice(text.indexOf('{'), text.indexOf('\r\n'))) as { tls_required?: boolean };
        socket.write('CONNECT {"verbose":false}\r\nPING\r\n');
      }
    });
    socket.on('error', () => done());
    socket.on('close', () => done());
    socket.setTimeout(3000, () => done());
    socket.on('timeout', () => reject(new Error('no answer')));
  });
}

describe('links that leave a machine are encrypted', () => {
  it('routes and leaf links are TLS only (mutual, with the CA of the certificates): a plain-text peer is refused; the cascade crosses them', async () => {
    const c = await cloud();
    const varz = (await fetch(`http://127.0.0.1:${c.nodes[0]!.monitorPort}/varz`).then((r) => r.json())) as {
      cluster: { cluster_port: number };
      leaf: { port: number };
    };
    for (const [name, port] of [
      ['route', varz.cluster.cluster_port],
      ['leaf', varz.leaf.port],
    ] as const) {
      const r = await plainText(port);
      // Nothing in plain text but, at most, an INFO that asks for TLS; a plain-text CONNECT and PING get no answer.
      if (Object.keys(r.info).length > 0) expect(r.info.tls_required, `${name} port ${port}`).toBe(true);
      expect(r.answered, `${name} port ${port} answered a plain-text PING`).toBe(false);
    }
    // The three nodes routed to each other and the site joined (startSite waits for its leaf link), so over TLS,
    // the only way these ports take; the site's cameras get answers from the cloud's workers.
    const routez = (await fetch(`http://127.0.0.1:${c.nodes[0]!.monitorPort}/routez`).then((r) => r.json())) as {
      num_routes: number;
    };
    expect(routez.num_routes).toBeGreaterThanOrEqual(2);
    await workers(c.urls);
    const site = await startSite(
      'site-a',
      c.nodes.map((n) => `127.0.0.1:${n.leafPort}`),
    );
    cleanup.push(() => site.stop('SIGKILL'));
    const cam = await connect({ servers: site.url, user: 'camera', pass: SITE_CAMERA_PASSWORD, inboxPrefix: '_INBOX.site-a.agent-1.cam-1' }); // prettier-ignore
    cleanup.push(() => cam.close());
    const reply = await cam.request('cascade.v1.infer.ranet-cifar10', new Uint8Array([1]), { timeout: 5000 });
    expect(reply.data.length).toBeGreaterThan(0); // a worker's coded refusal of a malformed request: it crossed
  }, 60_000);
});
