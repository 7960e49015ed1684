import { ConfigError } from '@cascade/proto';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelDir } from './manifest.js';
import { checkAgainstCpu } from './parity.js';
import { StageRunner } from './runner.js';
import type { Feeds } from './stages.js';

const model = await loadModelDir(new URL('../../../models/ranet-cifar10-small', import.meta.url).pathname);
const real = await StageRunner.create(model, { threads: 1 });
afterAll(() => real.close());

/** The real CPU runner, with one output of one stage shifted: what a provider with a wrong kernel returns. */
function skewed(stage: number, output: string, by: number) {
  return {
    async run(s: number, feeds: Feeds) {
      const r = await real.run(s, feeds);
      if (s === stage) r.outputs[output]!.data = (r.outputs[output]!.data as Float32Array).map((v) => v + by);
      return r;
    },
  };
}

describe('checkAgainstCpu - a provider must compute what the CPU computes', () => {
  it('passes a provider that agrees, and reports the difference', async () => {
    const report = await checkAgainstCpu(real, model, 'webgpu');
    expect(report).toEqual({ images: 2, maxRelativeDiff: 0 });
  });

  it('refuses a provider whose stage output is off, naming the stage and the output', async () => {
    const out = model.manifest.exits[2]!.output;
    const err = await checkAgainstCpu(skewed(1, out, 0.5), model, 'webgpu').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(new RegExp(`webgpu miscomputes stage 1 of ranet-cifar10-small.* ${out} `));
    expect((err as Error).message).toMatch(/--ep cpu/);
  });

  it('tolerates rounding: a difference under 1 % of the output passes', async () => {
    const out = model.manifest.exits[0]!.output;
    const report = await checkAgainstCpu(skewed(0, out, 1e-4), model, 'webgpu');
    expect(report.maxRelativeDiff).toBeGreaterThan(0);
    expect(report.maxRelativeDiff).toBeLessThan(0.01);
  });

  it('has nothing to check for the CPU provider', async () => {
    expect(await checkAgainstCpu(skewed(0, model.manifest.exits[0]!.output, 5), model, 'cpu')).toEqual({
      images: 0,
      maxRelativeDiff: 0,
    });
  });
});
