// The fleet configuration end to end: settings written with the `cascade` command reach a running edge through a
// real nats-server's key-value bucket and are applied between frames; invalid ones are refused without disturbing it;
// the registry lists the edge; the shipped NATS configuration lets an edge read only its own settings.
import { startNatsServer, type LocalNats } from '@cascade/demo';
import { EdgeAgent, openSource, type EdgeResult, type Frame } from '@cascade/edge';
import { configKey, FLEET, type EdgeHeartbeat } from '@cascade/proto';
import { loadModelDir, operatingPoint } from '@cascade/runtime';
import { ensureFleetBuckets } from '@cascade/service';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascadeCommand, MODEL, SAMPLES } from './harness.js';
import { MONITOR_LOGIN, PASSWORDS, startShippedNats, type NatsNode } from './topology.js';

const m = (await loadModelDir(MODEL)).manifest;

const cascade = cascadeCommand;

/** The sample images, round and round at about `fps`, until `stop` is set. */
async function* endless(stop: { now: boolean }, fps: number): AsyncGenerator<Frame> {
  while (!stop.now) {
    for await (const f of await openSource(SAMPLES, { size: 32 })) {
      if (stop.now) return;
      yield f;
      await new Promise((r) => setTimeout(r, 1000 / fps));
    }
  }
}

describe('fleet configuration - live settings through a key-value bucket', () => {
  let nats: LocalNats;
  let agent: EdgeAgent;
  const logs: { event: string; fields?: Record<string, unknown> }[] = [];
  const results: EdgeResult[] = [];
  const stop = { now: false };
  let running: Promise<number>;

  beforeAll(async () => {
    nats = await startNatsServer();
    agent = await EdgeAgent.create(
      { model: MODEL, nats: nats.url, id: 'cam-f', threads: 1, metricsPort: -1, operatingPoint: 'balanced' },
      (event, fields) => void logs.push({ event, ...(fields ? { fields } : {}) }),
    );
    running = agent.run(endless(stop, 100), (r) => results.push(r));
  });
  afterAll(async () => {
    stop.now = true;
    await running;
    await agent?.shutdown();
    await nats?.stop();
  });

  const settled = () => agent.fleet!.nextChange();

  it('cascade config set reaches the running edge, which applies it between frames', async () => {
    const balanced = operatingPoint(m, 'balanced').thresholds;
    const economy = operatingPoint(m, 'economy').thresholds;
    expect(agent.thresholds).toEqual(balanced);
    let changed = settled();
    const set = await cascade(nats.url, ['config', 'set', 'default', 'shadow_rate=0.1', 'controller=false']);
    expect(set.code).toBe(0);
    expect(set.stdout).toMatch(/edges.default \(revision 1\): \{"shadow_rate":0.1,"controller":false\}/);
    await changed;
    expect(agent.adapt.current.shadowRate).toBe(0.1);
    const before = results.length;
    changed = settled();
    expect((await cascade(nats.url, ['config', 'set', 'cam-f', 'operating_point=economy'])).code).toBe(0);
    await changed;
    expect(agent.thresholds).toEqual(economy);
    expect(agent.operatingPointName).toBe('economy');
    // Frames kept flowing through the change (a later frame answered; waited for, not assumed after a pause).
    while (results.length <= before) await new Promise((r) => setTimeout(r, 20));
    expect(results.length).toBeGreaterThan(before);
  });

  it('an invalid setting is refused with a reason, and the edge keeps what it had', async () => {
    const economy = operatingPoint(m, 'economy').thresholds;
    // The command refuses what it can check itself ...
    const bad = await cascade(nats.url, ['config', 'set', 'cam-f', 'shadow_rate=3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/edges.cam-f: shadow_rate must be a number from 0 to 1, got 3/);
    // ... the edge refuses what only it can (its model has no such operating point), also when written directly.
    const nc = await connect({ servers: nats.url });
    const kv = await new Kvm(nc).open(FLEET.configBucket);
    let changed = settled();
    await kv.put(configKey.edge('cam-f'), JSON.stringify({ operating_point: 'nonesuch' }));
    await changed;
    expect(agent.thresholds).toEqual(economy);
    expect(agent.fleet!.status.error).toMatch(/operating point "nonesuch" is not in the manifest; it has: accurate/);
    changed = settled();
    await kv.put(configKey.edge('cam-f'), 'not json');
    await changed;
    expect(agent.fleet!.status.error).toMatch(/edges.cam-f: not JSON/);
    expect(agent.thresholds).toEqual(economy);
    const refused = logs.filter((l) => l.event === 'fleet_config_refused');
    expect(refused).toHaveLength(2);
    expect(agent.metrics.registry.getSingleMetric('cascade_edge_config_updates_total')).toBeDefined();
    // Removing the key puts the edge back on the fleet default and its own options.
    changed = settled();
    expect((await cascade(nats.url, ['config', 'rm', 'cam-f'])).code).toBe(0);
    await changed;
    expect(agent.thresholds).toEqual(operatingPoint(m, 'balanced').thresholds);
    expect(agent.fleet!.status.error).toBeUndefined();
    await nc.close();
  });

  it('cascade fleet lists the edge with its model, operating point and last heartbeat', async () => {
    await new Promise((r) => setTimeout(r, FLEET.heartbeatMs + 500));
    const out = await cascade(nats.url, ['fleet', '--json']);
    expect(out.code).toBe(0);
    const edges = JSON.parse(out.stdout) as EdgeHeartbeat[];
    const e = edges.find((x) => x.id === 'cam-f')!;
    expect(e).toMatchObject({ model: m.name, model_version: m.version, operating_point: 'balanced', shadow_rate: 0.1 });
    expect(Date.now() - e.sent_unix_ms).toBeLessThan(FLEET.heartbeatMs + 1000);
    expect(e.frames).toBeGreaterThan(100);
    const table = await cascade(nats.url, ['fleet']);
    expect(table.stdout).toMatch(/^edge\s+model\s+operating point\s+offload/);
    expect(table.stdout).toMatch(/cam-f\s+ranet-cifar10@/);
  }, 15_000);

  it('every frame still has exactly one result', async () => {
    const seq = results.map((r) => r.sequence).sort((a, b) => a - b);
    expect(new Set(seq).size).toBe(seq.length);
    expect(seq.at(-1)).toBe(seq.length);
  });
});

describe('fleet configuration - permissions in the shipped NATS configuration', () => {
  let server: NatsNode;
  beforeAll(async () => {
    server = await startShippedNats('nats.conf');
    const admin = await connect({ servers: server.url, ...MONITOR_LOGIN });
    await ensureFleetBuckets(admin);
    await admin.close();
  });
  afterAll(() => server?.stop());

  const operator = ['--nats-user', 'monitor', '--nats-password', PASSWORDS.CASCADE_MONITOR_PASSWORD];

  it('an operator writes settings; an edge reads its own and the default, writes its registry entry, nothing more', async () => {
    expect((await cascade(server.url, ['config', 'set', 'cam-1', 'shadow_rate=0.05', ...operator])).code).toBe(0);
    expect((await cascade(server.url, ['config', 'set', 'cam-2', 'shadow_rate=0.07', ...operator])).code).toBe(0);
    expect((await cascade(server.url, ['config', 'set', 'default', 'controller=true', ...operator])).code).toBe(0);
    const logs: string[] = [];
    const agent = await EdgeAgent.create(
      {
        model: MODEL, nats: server.url, id: 'cam-1', threads: 1, metricsPort: -1,
        natsAuth: { user: 'cam-1', password: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD },
      }, // prettier-ignore
      (event, fields) => void logs.push(`${event} ${JSON.stringify(fields ?? {})}`),
    );
    try {
      for (let i = 0; i < 50 && agent.adapt.current.shadowRate !== 0.05; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect(agent.adapt.current, logs.join('\n')).toMatchObject({ shadowRate: 0.05, controller: true });
      expect(logs.filter((l) => /fleet_(config_unavailable|heartbeat_failed)/.test(l))).toEqual([]);
      // Its registry entry is there, written with its own credentials.
      const admin = await connect({ servers: server.url, ...MONITOR_LOGIN });
      const entry = await (await new Kvm(admin).open(FLEET.edgesBucket)).get('cam-1');
      expect(JSON.parse(entry!.string())).toMatchObject({ id: 'cam-1', shadow_rate: 0.05 });
      await admin.close();
    } finally {
      await agent.shutdown();
    }
    const edge = await connect({
      servers: server.url,
      user: 'cam-1',
      pass: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD,
      inboxPrefix: '_INBOX.cam-1',
    });
    const kv = await new Kvm(edge).open(FLEET.configBucket);
    await expect(kv.put(configKey.edge('cam-1'), '{"shadow_rate":1}')).rejects.toThrow(/permission|timeout/i);
    await expect(kv.put(configKey.default, '{}')).rejects.toThrow(/permission|timeout/i);
    const other = await kv.watch({ key: configKey.edge('cam-2') }).then(
      () => 'watching',
      (err: Error) => err.message,
    );
    expect(other).toMatch(/permission/i);
    const registry = await new Kvm(edge).open(FLEET.edgesBucket);
    await expect(registry.put('cam-2', '{}')).rejects.toThrow(/permission|timeout/i);
    // A worker's credentials do not write settings either.
    const worker = await cascade(server.url, [
      'config', 'set', 'cam-1', 'shadow_rate=1', '--nats-user', 'worker', '--nats-password', PASSWORDS.CASCADE_WORKER_PASSWORD,
    ]); // prettier-ignore
    expect(worker.code).not.toBe(0);
    await edge.close();
  }, 60_000);
});
