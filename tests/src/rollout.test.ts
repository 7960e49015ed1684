// A model rollout over the shipped NATS configuration, mid-stream: two versions of one model in the registry, two
// workers and two edge processes on the first; a corrupted version refused by workers, edges and the command while
// the running version keeps serving; `cascade rollout` to the second version and `--undo` back, then a canary of one
// edge and its undo, with every frame answered once, in the results stream once, and no offload lost to a version
// mismatch (a mismatch or a missing version would show as a fallback).
import { startWorker, type WorkerProcess } from '@cascade/demo';
import { configKey, FLEET } from '@cascade/proto';
import { loadModelDir } from '@cascade/runtime';
import { ensureFleetBuckets, openBucket } from '@cascade/service';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fallbacks, framesIn, inStream, startEdge, whenResults, type EdgeRun } from './edge-process.js';
import { cascadeCommand, decodeReply, encodeRequest, MODEL, REPO, validRequest } from './harness.js';
import { MONITOR_LOGIN, PASSWORDS, startShippedNats, WORKER_LOGIN, type NatsNode } from './topology.js';

const OPERATOR = ['--nats-user', 'monitor', '--nats-password', PASSWORDS.CASCADE_MONITOR_PASSWORD];
const v1 = (await loadModelDir(MODEL)).manifest;
const NAME = v1.name;

/**
 * A second version of the same model: the small network's export under this model's name (its version is the hash
 * of its own graphs). Its exits and carried state differ from v1's, so a frame offloaded by one version cannot be
 * finished by the other.
 */
function secondVersion(): { dir: string; version: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cascade-v2-'));
  cpSync(`${REPO}models/ranet-cifar10-small`, dir, { recursive: true });
  const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { name: string; version: string };
  m.name = NAME;
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m, null, 1));
  return { dir, version: m.version };
}

describe('model rollout across a split model, mid-stream', () => {
  let server: NatsNode;
  let admin: NatsConnection;
  const workers: WorkerProcess[] = [];
  const edges: EdgeRun[] = [];
  const v2 = secondVersion();

  beforeAll(async () => {
    server = await startShippedNats('nats.conf');
    admin = await connect({ servers: server.url, ...MONITOR_LOGIN });
  });
  afterAll(async () => {
    for (const e of edges) await e.kill();
    for (const w of workers) await w.stop();
    await admin?.close();
    await server?.stop();
  });

  it('rolls a version out and back while edges stream: one result per frame, no fallback, every step waited for', async () => {
    for (const dir of [MODEL, v2.dir])
      expect((await cascadeCommand(server.url, ['model', 'push', dir, ...OPERATOR])).code).toBe(0);
    // v2 corrupted in the registry: one stage replaced by bytes that do not match the manifest.
    const os = await new Objm(admin).open(FLEET.modelsBucket);
    const good = await os.getBlob(`${NAME}/${v2.version}/stage-1.onnx`);
    await os.putBlob({ name: `${NAME}/${v2.version}/stage-1.onnx` }, new Uint8Array(good!.byteLength).fill(7));

    for (const id of ['w-1', 'w-2'])
      workers.push(
        await startWorker({
          model: `${NAME}@${v1.version}`,
          nats: server.url,
          id,
          extra: ['--threads', '1', '--model-cache', mkdtempSync(join(tmpdir(), 'cascade-models-')), ...WORKER_LOGIN],
        }),
      );
    for (const [id, password] of [
      ['cam-1', PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD],
      ['cam-2', PASSWORDS.CASCADE_EDGE_CAM_2_PASSWORD],
    ] as const)
      edges.push(
        startEdge({
          url: server.url,
          id,
          frames: 5000,
          fps: 25,
          extra: [
            ...['--nats-user', id, '--nats-password', password!, '--repeat', '5', '--operating-point', 'accurate'],
            ...['--model-cache', mkdtempSync(join(tmpdir(), 'cascade-models-'))],
          ],
        }),
      );
    await Promise.all(edges.map((e) => whenResults(e, 50)));
    const fleet = async () => JSON.parse((await cascadeCommand(server.url, ['fleet', '--json', ...OPERATOR])).stdout) as { id: string; model_version: string }[]; // prettier-ignore
    while ((await fleet()).length < 2) await new Promise((r) => setTimeout(r, 500));

    // The command reads a new version back before it changes anything, and refuses a corrupted one.
    const refused = await cascadeCommand(server.url, ['rollout', `${NAME}@${v2.version}`, ...OPERATOR]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/stage-1.onnx from the registry does not match its sha256 .*nothing was changed/);
    // Written by hand, the same rollout is refused by every worker and edge, which keep serving v1.
    await ensureFleetBuckets(admin);
    const kv = await openBucket(admin, FLEET.configBucket);
    await kv.put(configKey.model(NAME), JSON.stringify({ workers: [v1.version, v2.version], edges: v2.version }));
    const refusedBy = async (what: () => string, pattern: RegExp) => {
      while (!pattern.test(what())) await new Promise((r) => setTimeout(r, 200));
    };
    for (const w of workers) await refusedBy(w.log, /"model_version_refused".*does not match its sha256/);
    for (const e of edges) await refusedBy(e.stderr, /"model_switch_refused".*does not match its sha256/);
    const status = (await cascadeCommand(server.url, ['rollout', 'status', NAME, ...OPERATOR])).stdout;
    expect(status).toMatch(new RegExp(`edges: ${v1.version}: cam-1, cam-2|edges: ${v1.version}: cam-2, cam-1`));
    expect(status).toMatch(/cam-1 refused .*does not match its sha256/);
    await kv.put(configKey.model(NAME), JSON.stringify({ workers: [v1.version], edges: v1.version }));

    // Repaired, it rolls out mid-stream and back.
    await os.putBlob({ name: `${NAME}/${v2.version}/stage-1.onnx` }, good!);
    const out = await cascadeCommand(server.url, ['rollout', `${NAME}@${v2.version}`, '--json', '--timeout-s', '60', ...OPERATOR]); // prettier-ignore
    if (out.code !== 0)
      for (const w of [...workers.map((w) => w.log()), ...edges.map((e) => e.stderr())])
        console.log(
          w
            .split('\n')
            .filter((l) => /model_|kv_|rollout|fleet/.test(l))
            .join('\n'),
        );
    expect(out).toMatchObject({ code: 0, stderr: '' });
    const forward = JSON.parse(out.stdout) as { steps: { step: string; seconds: number }[]; workers: string[]; edges: string[] }; // prettier-ignore
    expect(forward.steps.map((s) => s.step)).toEqual(['workers add', 'edges switch', 'workers drop']);
    expect(forward.workers.sort()).toEqual([`w-1: ${v2.version}`, `w-2: ${v2.version}`]);
    expect(forward.edges.sort()).toEqual([`cam-1: ${v2.version}`, `cam-2: ${v2.version}`]);
    const switchedAt = edges.map((e) => e.results.length);
    await Promise.all(edges.map((e, i) => whenResults(e, switchedAt[i]! + 100)));
    const back = await cascadeCommand(server.url, [
      'rollout',
      '--undo',
      NAME,
      '--json',
      '--timeout-s',
      '60',
      ...OPERATOR,
    ]);
    expect(back).toMatchObject({ code: 0, stderr: '' });
    const undo = JSON.parse(back.stdout) as typeof forward;
    expect(undo.edges.sort()).toEqual([`cam-1: ${v1.version}`, `cam-2: ${v1.version}`]);
    expect(undo.workers.sort()).toEqual([`w-1: ${v1.version}`, `w-2: ${v1.version}`]);

    // A few more frames on v1, then the edges are stopped (SIGTERM: they finish what they took in).
    // A canary: only cam-2 runs v2, the workers serve both; its undo puts cam-2 back and the workers drop v2.
    const canaryOut = await cascadeCommand(server.url, ['rollout', `${NAME}@${v2.version}`, '--edges', 'cam-2', '--json', '--timeout-s', '60', ...OPERATOR]); // prettier-ignore
    expect(canaryOut).toMatchObject({ code: 0, stderr: '' });
    const canary = JSON.parse(canaryOut.stdout) as typeof forward;
    expect(canary.edges.sort()).toEqual([`cam-1: ${v1.version}`, `cam-2: ${v2.version}`]);
    expect(canary.workers.sort()).toEqual([`w-1: ${[v1.version, v2.version].sort().join(', ')}`, `w-2: ${[v1.version, v2.version].sort().join(', ')}`]); // prettier-ignore
    // On the unversioned subject of clients from before versions, a request goes to the version it names.
    const client = await connect({ servers: server.url, user: 'cam-1', pass: PASSWORDS.CASCADE_EDGE_CAM_1_PASSWORD, inboxPrefix: '_INBOX.cam-1' }); // prettier-ignore
    for (const m of [await loadModelDir(MODEL), await loadModelDir(v2.dir)]) {
      const reply = decodeReply((await client.request(`cascade.v1.infer.${NAME}`, encodeRequest(validRequest(m)), { timeout: 5000 })).data); // prettier-ignore
      expect(reply.code).toBeUndefined();
      expect(reply.prediction?.exit).toBeLessThan(m.manifest.exits.length);
    }
    await client.close();
    const canaryAt = edges.map((e) => e.results.length);
    await Promise.all(edges.map((e, i) => whenResults(e, canaryAt[i]! + 50)));
    const canaryBack = await cascadeCommand(server.url, ['rollout', '--undo', NAME, '--json', '--timeout-s', '60', ...OPERATOR]); // prettier-ignore
    expect(canaryBack).toMatchObject({ code: 0, stderr: '' });
    expect((JSON.parse(canaryBack.stdout) as typeof forward).workers.sort()).toEqual([`w-1: ${v1.version}`, `w-2: ${v1.version}`]); // prettier-ignore
    const undoneAt = edges.map((e) => e.results.length);
    await Promise.all(edges.map((e, i) => whenResults(e, undoneAt[i]! + 50)));
    for (const e of edges) e.proc.kill('SIGTERM');
    const figures = [];
    for (const e of edges) {
      expect(await e.exit).toBe(0);
      // In frame order (a frame's version is the one running when it started; print order may interleave them).
      const versions = [...e.results].sort((a, b) => a.r.sequence - b.r.sequence).map(({ r }) => r.model_version);
      const runs = versions.filter((v, i) => i === 0 || v !== versions[i - 1]);
      const id = /"id":"(cam-\d)"/.exec(e.stderr())![1]!;
      const stream = await inStream(server.url, id, MONITOR_LOGIN);
      const row = {
        edge: id,
        frames_in: framesIn(e),
        results: e.results.length,
        in_stream: stream.unique,
        duplicates: stream.duplicates,
        fallbacks: fallbacks(e),
        offloaded: e.results.filter(({ r }) => r.outcome === 'offloaded').length,
        on_v2: versions.filter((v) => v === v2.version).length,
        versions_in_order: runs,
      };
      figures.push(row);
      expect(row).toMatchObject({ results: row.frames_in, in_stream: row.frames_in, duplicates: 0, fallbacks: {} });
      expect(row.frames_in).toBeGreaterThan(300);
      expect(runs.slice(0, 1).concat(runs.slice(-1))).toEqual([v1.version, v1.version]);
      expect(runs.filter((v) => v === v2.version).length).toBe(id === 'cam-2' ? 2 : 1); // the canary too
      expect(row.on_v2).toBeGreaterThan(100);
    }
    console.log(`rollout figures: ${JSON.stringify({ forward: forward.steps, back: undo.steps, canary: canary.steps, edges: figures })}`); // prettier-ignore
    // Each worker refused the corrupted copy, then added v2, v1 again on the way back, v2 for the canary, and
    // dropped v1, v2 and v2.
    for (const w of workers) {
      expect(w.log().match(/"model_version_refused"/g)).toHaveLength(1);
      expect(w.log().match(/"model_version_added"/g)).toHaveLength(3);
      expect(w.log().match(/"model_version_dropped"/g)).toHaveLength(3);
    }
  }, 240_000);
});
