import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkAgainstCpu, fusedOutputs, fuseStages, loadModelDir, StageRunner, type Feeds } from './index.js';

const REPO = new URL('../../../', import.meta.url).pathname;
const SAMPLES = `${REPO}samples/cifar10-test-1000.bin`;

async function images(n: number): Promise<Uint8Array> {
  const raw = await readFile(SAMPLES);
  const out = new Uint8Array(n * 3072);
  for (let i = 0; i < n; i++) out.set(raw.subarray((i + 100) * 3073 + 1, (i + 101) * 3073), i * 3072);
  return out;
}

describe.each(['ranet-cifar10', 'ranet-cifar10-small'])('joined stage graphs - %s', (name) => {
  it(
    'every first stage: one graph gives the logits the stages give one by one, on real images',
    { timeout: 60_000 },
    async () => {
      const model = await loadModelDir(`${REPO}models/${name}`);
      const m = model.manifest;
      const n = m.stages.length;
      const firsts = Array.from({ length: n - 1 }, (_, s) => s);
      const runner = await StageRunner.create(model, { threads: 1, fused: firsts });
      try {
        expect(runner.fused).toEqual(firsts);
        const batch = 8;
        const image = await images(batch);
        // Fresh copies each time: the runner takes its inputs' buffers (transfer).
        const feed = (s: number, carried: Feeds): Feeds => {
          const f: Feeds = { image: { data: image.slice(), dims: [batch, ...m.input.shape] } };
          for (const t of m.stages[s]!.inputs) {
            if (t.name !== 'image') f[t.name] = { data: carried[t.name]!.data.slice(), dims: carried[t.name]!.dims };
          }
          return f;
        };
        // Stage by stage: every stage's inputs and every exit's logits.
        const inputs: Feeds[] = [];
        const logits: Feeds = {};
        let carried: Feeds = {};
        for (let s = 0; s < n; s++) {
          inputs.push(feed(s, carried));
          carried = (await runner.run(s, feed(s, carried))).outputs;
          for (const e of m.stages[s]!.exits) logits[m.exits[e]!.output] = carried[m.exits[e]!.output]!;
        }
        for (const first of firsts) {
          const { outputs } = await runner.runFused(first, inputs[first]!);
          expect(Object.keys(outputs)).toEqual(fusedOutputs(m, first));
          for (const [out, t] of Object.entries(outputs)) {
            expect(t.dims).toEqual([batch, m.classes.length]);
            const want = logits[out]!.data;
            let diff = 0;
            for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(want[i]! - t.data[i]!));
            expect(diff, `${out} from stage ${first}`).toBeLessThan(1e-4);
          }
        }
        // The start-up check covers the joined graphs (on the CPU provider too).
        expect((await checkAgainstCpu(runner, model, 'cpu')).images).toBe(2);
      } finally {
        await runner.close();
      }
    },
  );
});

describe('joined stage graphs - what cannot be joined', () => {
  it('a stage file that is not the stage the manifest names is refused with the stages named', async () => {
    const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
    const m = model.manifest;
    const file = (s: number) => readFile(join(model.path, m.stages[s]!.file));
    // Stage 2's graph where stage 3's belongs: the exits 6 and 7 are declared by no graph.
    const graphs = [await file(1), await file(2), await file(2)];
    expect(() => fuseStages(m, 1, graphs)).toThrow(
      /cannot join stages 1\.\. of ranet-cifar10@.*declare 4 of 6 exit outputs/,
    );
    expect(() => fuseStages(m, 1, graphs.slice(0, 2))).toThrow(RangeError);
    expect(() => fuseStages(m, 0, [new Uint8Array([0x0f])])).toThrow(RangeError);
  });

  it('a runner asked to join stages it does not load is refused at creation', async () => {
    const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
    await expect(StageRunner.create(model, { threads: 1, first: 2, fused: [1] })).rejects.toThrow(/fused from stage 1/);
    const runner = await StageRunner.create(model, { threads: 1 });
    await expect(runner.runFused(1, {})).rejects.toThrow(/not loaded as one graph/);
    await runner.close();
  });
});

describe('stage runner - inputs it cannot take', () => {
  it('an input whose buffer was already handed over (detached) is refused, not lost', async () => {
    const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
    const runner = await StageRunner.create(model, { threads: 1 });
    try {
      const image = { data: new Uint8Array(2 * 3072), dims: [2, 3, 32, 32] };
      const state = new Float32Array(2 * 256 * 64);
      structuredClone(state.buffer, { transfer: [state.buffer] }); // detaches it, as a run() before would
      await expect(runner.run(1, { image, state0: { data: state, dims: [2, 256, 8, 8] } })).rejects.toThrow(
        /input "state0" holds 0 values for dims \[2,256,8,8\]/,
      );
    } finally {
      await runner.close();
    }
  });
});
