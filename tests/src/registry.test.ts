// The model registry over a real nats-server: models pushed with `cascade model push`, listed, served by a worker
// and an edge that name them NAME@VERSION, a replaced object refused by its hash, and the cache serving without NATS.
import { startNatsServer, startWorker, type LocalNats, type WorkerProcess } from '@cascade/demo';
import { FLEET } from '@cascade/proto';
import { loadModelDir } from '@cascade/runtime';
import { pushModel, resolveModel } from '@cascade/service';
import { Objm } from '@nats-io/obj';
import { connect } from '@nats-io/transport-node';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascadeCommand, MODEL, REPO, runEdge } from './harness.js';
import { MONITOR_LOGIN, PASSWORDS, startShippedNats, WORKER_LOGIN, type NatsNode } from './topology.js';

const big = (await loadModelDir(MODEL)).manifest;
const small = (await loadModelDir(`${REPO}models/ranet-cifar10-small`)).manifest;
const BIG = `${big.name}@${big.version}`;
const SMALL = `${small.name}@${small.version}`;

const cascade = cascadeCommand;

describe('model registry - a JetStream object store of model directories', () => {
  let nats: LocalNats;
  let worker: WorkerProcess | undefined;
  const cache = mkdtempSync(join(tmpdir(), 'cascade-models-'));

  beforeAll(async () => {
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await worker?.stop();
    await nats?.stop();
  });

  it('cascade model push uploads a model once; cascade model ls lists every version', async () => {
    const first = await cascade(nats.url, ['model', 'push', MODEL]);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`${BIG}: ${big.stages.length + 1} of ${big.stages.length + 1} files uploaded`)); // prettier-ignore
    const again = await cascade(nats.url, ['model', 'push', MODEL]);
    expect(again.stdout).toMatch(/0 of \d+ files uploaded/);
    expect((await cascade(nats.url, ['model', 'push', `${REPO}models/ranet-cifar10-small`])).code).toBe(0);
    const ls = JSON.parse((await cascade(nats.url, ['model', 'ls', '--json'])).stdout) as { name: string; version: string }[]; // prettier-ignore
    expect(ls.map((m) => `${m.name}@${m.version}`).sort()).toEqual([BIG, SMALL].sort());
  });

  it('a worker and an edge that name a model NAME@VERSION fetch it, check it, and run the cascade', async () => {
    worker = await startWorker({
      model: BIG,
      nats: nats.url,
      id: 'w-registry',
      extra: ['--threads', '1', '--model-cache', cache],
    });
    expect(worker.log()).toMatch(/"model_resolved".*"from":"registry"/);
    const results = await runEdge({ model: BIG, modelCache: cache, nats: nats.url, id: 'cam-r', operatingPoint: 'accurate' }, 100); // prettier-ignore
    expect(results).toHaveLength(100);
    expect(results.filter((r) => r.outcome === 'offloaded').length).toBeGreaterThan(0);
    expect(results.filter((r) => r.outcome === 'fallback')).toEqual([]);
    expect(results.every((r) => r.model_version === big.version)).toBe(true);
  }, 60_000);

  it('a replaced object is refused by its hash, and nothing of it is kept', async () => {
    const nc = await connect({ servers: nats.url });
    const os = await new Objm(nc).open(FLEET.modelsBucket);
    await os.putBlob({ name: `${small.name}/${small.version}/${small.stages[1]!.file}` }, new Uint8Array(1000).fill(7));
    await nc.close();
    const fresh = mkdtempSync(join(tmpdir(), 'cascade-models-'));
    const out = await cascade(nats.url, ['model', 'fetch', SMALL, '--cache', fresh]);
    expect(out.code).not.toBe(0);
    expect(out.stderr).toMatch(
      new RegExp(`${SMALL}: ${small.stages[1]!.file} from the registry does not match its sha256 in the manifest`),
    );
    expect(readdirSync(join(fresh, small.name))).toEqual([]); // no partial copy
    // The good version is untouched and still served.
    expect((await cascade(nats.url, ['model', 'fetch', BIG, '--cache', fresh])).stdout).toMatch(/from the registry/);
  });

  it('without NATS, a cached version starts from the cache; an uncached one fails naming what is missing', async () => {
    const url = nats.url;
    await worker?.stop();
    worker = undefined;
    await nats.stop();
    const logs: string[] = [];
    const dir = await resolveModel(BIG, { servers: url, cache, connectMs: 1000, log: (e) => void logs.push(e) });
    expect(existsSync(join(dir, 'manifest.json'))).toBe(true);
    expect(logs).toEqual(['model_registry_unreachable', 'model_resolved']);
    await expect(resolveModel(SMALL, { servers: url, cache, connectMs: 1000 })).rejects.toThrow(
      new RegExp(`${SMALL} is not in the cache .* and NATS is not connected`),
    );
  }, 30_000);
});

describe('model registry - permissions in the shipped NATS configuration', () => {
  let server: NatsNode;
  let worker: WorkerProcess | undefined;
  beforeAll(async () => {
    server = await startShippedNats('nats.conf');
  });
  afterAll(async () => {
    await worker?.stop();
    await server?.stop();
  });

  it('operators push; workers and edges fetch with their own logins; an edge cannot push', async () => {
    const operator = ['--nats-user', 'monitor', '--nats-password', PASSWORDS.CASCADE_MONITOR_PASSWORD];
    expect((await cascade(server.url, ['model', 'push', MODEL, ...operator])).code).toBe(0);
    const cache = mkdtempSync(join(tmpdir(), 'cascade-models-'));
    worker = await startWorker({
      model: BIG,
      nats: server.url,
      id: 'w-perm',
      extra: ['--threads', '1', '--model-cache', cache, ...WORKER_LOGIN],
    });
    expect(worker.log()).toMatch(/"model_resolved".*"from":"registry"/);
    const edgeCache = mkdtempSync(join(tmpdir(), 'cascade-models-'));
    const auth = { user: 'cam-1', password: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD, inboxPrefix: '_INBOX.cam-1' };
    const dir = await resolveModel(BIG, { servers: server.url, auth, cache: edgeCache });
    expect(existsSync(join(dir, big.stages[0]!.file))).toBe(true);
    const edge = await connect({ servers: server.url, user: auth.user, pass: auth.password, inboxPrefix: auth.inboxPrefix }); // prettier-ignore
    await expect(pushModel(edge, `${REPO}models/ranet-cifar10-small`)).rejects.toThrow(/permission|timeout/i);
    await edge.close();
    // The monitor login is the only one that lists what the registry has.
    const admin = await connect({ servers: server.url, ...MONITOR_LOGIN });
    const names = (await (await new Objm(admin).open(FLEET.modelsBucket)).list()).map((o) => o.name);
    expect(names.filter((n) => n.startsWith(`${small.name}/`))).toEqual([]);
    await admin.close();
  }, 60_000);
});
