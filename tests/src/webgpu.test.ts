// The GPU code path without a GPU: a worker on onnxruntime's WebGPU provider (Dawn over Vulkan, here Mesa's lavapipe)
// answers the same frames as a CPU worker. scripts/setup test installs lavapipe.
import { startWorker, type WorkerProcess } from '@cascade/demo';
import { encodeTensor, imageTensor, subjects, toWireTensor, v1, type InferRequestMessage } from '@cascade/proto';
import { carriedOutputs, operatingPoint, StageRunner, type ModelDir } from '@cascade/runtime';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeReply, metricValue, MODEL, model, natsForTests, REPO, sampleImage, type TestNats } from './harness.js';

process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'cascade-xdg-'));

const FRAMES = 48;
let m: ModelDir;
const servers: TestNats[] = [];
const clients: NatsConnection[] = [];
const workers: WorkerProcess[] = [];

/** Requests for the first FRAMES sample images: state mode (real int8 state from stage 0) or image mode. */
async function requests(mode: 'state' | 'image'): Promise<Uint8Array[]> {
  const man = m.manifest;
  const runner = await StageRunner.create(m, { last: 0, threads: 1 });
  try {
    const out: Uint8Array[] = [];
    for (let i = 0; i < FRAMES; i++) {
      const state = [];
      if (mode === 'state') {
        const { outputs } = await runner.run(0, { image: { data: sampleImage(i), dims: [1, ...man.input.shape] } });
        for (const spec of carriedOutputs(man, 0)) {
          const t = outputs[spec.name]!;
          state.push(toWireTensor(spec.name, encodeTensor(t.data as Float32Array, t.dims.slice(1), 'int8')));
        }
      }
      const req: InferRequestMessage = {
        requestId: `${mode}-${i}`, edgeId: 'gpu-test', model: man.name, modelVersion: man.version,
        firstStage: mode === 'state' ? 1 : 0, image: imageTensor(sampleImage(i), man.input.shape), state,
        deadlineUnixMs: Date.now() + 600_000, returnProbabilities: true, thresholds: operatingPoint(man, 'accurate').thresholds,
      }; // prettier-ignore
      out.push(v1.InferRequest.encode(req).finish());
    }
    return out;
  } finally {
    await runner.close();
  }
}

beforeAll(async () => {
  m = await model();
  // One server per worker, so that each answers every request sent to it.
  for (const ep of ['cpu', 'webgpu']) {
    const nats = await natsForTests();
    servers.push(nats);
    clients.push(await connect({ servers: nats.url }));
    workers.push(
      await startWorker({ model: MODEL, nats: nats.url, id: `w-${ep}`, extra: ['--threads', '1', '--ep', ep] }),
    );
  }
}, 180_000);

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('webgpu worker - the GPU code path on a software Vulkan adapter', () => {
  for (const mode of ['state', 'image'] as const) {
    it(`answers ${mode}-mode requests with the CPU worker's exit and class, probabilities within 1e-3`, async () => {
      const reqs = await requests(mode);
      const subject = subjects.infer(m.manifest.name);
      const ask = (c: NatsConnection) =>
        Promise.all(reqs.map(async (r) => decodeReply((await c.request(subject, r, { timeout: 120_000 })).data)));
      const [cpu, gpu] = [await ask(clients[0]!), await ask(clients[1]!)];
      for (let i = 0; i < FRAMES; i++) {
        const a = cpu[i]!.prediction!;
        const b = gpu[i]!.prediction!;
        expect(b, JSON.stringify(gpu[i]!.error)).toBeTruthy();
        expect(gpu[i]!.workerId).toBe('w-webgpu');
        expect([b.exit, b.classIndex]).toEqual([a.exit, a.classIndex]);
        const diff = Math.max(...a.probabilities!.map((p, k) => Math.abs(p - b.probabilities![k]!)));
        expect(diff).toBeLessThan(1e-3);
      }
    }, 300_000);
  }

  it("the stage graphs give the CPU provider's logits within 1e-3 on WebGPU", async () => {
    const man = m.manifest;
    const images = new Uint8Array(16 * 3072);
    for (let i = 0; i < 16; i++) images.set(sampleImage(i), i * 3072);
    const logits = async (ep: 'cpu' | 'webgpu') => {
      const runner = await StageRunner.create(m, { executionProvider: ep, threads: 1 });
      try {
        const out: Record<string, Float32Array> = {};
        let carried: Record<string, { data: Float32Array | Uint8Array; dims: number[] }> = {};
        for (let s = 0; s < man.stages.length; s++) {
          const feeds = { ...carried, image: { data: images.slice(), dims: [16, ...man.input.shape] } };
          const { outputs } = await runner.run(s, feeds);
          for (const e of man.stages[s]!.exits)
            out[man.exits[e]!.output] = (outputs[man.exits[e]!.output]!.data as Float32Array).slice(); // the next stage takes the buffers
          carried = outputs;
        }
        return out;
      } finally {
        await runner.close();
      }
    };
    const [cpu, gpu] = [await logits('cpu'), await logits('webgpu')];
    expect(Object.keys(gpu).sort()).toEqual(Object.keys(cpu).sort());
    for (const name of Object.keys(cpu)) {
      const diff = Math.max(...cpu[name]!.map((v, i) => Math.abs(v - gpu[name]![i]!)));
      expect(diff, name).toBeLessThan(1e-3);
    }
  }, 300_000);

  it('shows its provider in /metrics and $SRV INFO', async () => {
    const text = await (await fetch(`http://127.0.0.1:${workers[1]!.metricsPort}/metrics`)).text();
    expect(metricValue(text, 'cascade_build_info', { component: 'cloud', ep: 'webgpu' })).toBe(1);
    expect(workers[1]!.log()).toMatch(/"event":"worker_started".*"ep":"webgpu"/);
  });

  it('a provider whose libraries are missing exits 2 saying how to get them, never falling back to the CPU', () => {
    const r = spawnSync(
      process.execPath,
      [join(REPO, 'packages/cloud/dist/cli.js'), '--model', MODEL, '--ep', 'cuda', '--metrics-port', '-1'],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/execution provider cuda: .*worker-cuda image/);
  });
});
