import { ConfigError, elementCount } from '@cascade/proto';
import type { ModelDir } from './manifest.js';
import { StageRunner, type StageResult } from './runner.js';
import type { ExecutionProvider, Feeds } from './stages.js';
import { fusedOutputs } from './fuse.js';

/** An output may differ from the CPU provider's by at most this fraction of its largest absolute value (or of 1). */
export const PARITY_TOLERANCE = 0.01;

/** What checkAgainstCpu() measured: the largest difference of any output, as a fraction of that output's scale. */
export interface ParityReport {
  images: number;
  maxRelativeDiff: number;
}

const copy = (feeds: Feeds): Feeds =>
  Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { data: t.data.slice(), dims: [...t.dims] }]));

/**
 * Runs every stage on a few fixed images through `runner` and through onnxruntime's CPU provider, each stage fed the
 * CPU provider's carried state, and throws ConfigError naming the first output that differs by more than
 * PARITY_TOLERANCE. GPU providers have shipped kernels that miscompute some shapes (onnxruntime 1.30's WebGPU Conv
 * with an odd number of input channels gave errors of about 10 in logits of about 3): a worker that would answer
 * wrongly must not start. A runner with joined graphs (`fused`) has each checked too, against the CPU provider's
 * stages one by one: that also checks the join itself, on the CPU provider as well. Nothing else to do on the CPU.
 */
export async function checkAgainstCpu(
  runner: {
    run(stage: number, feeds: Feeds): Promise<StageResult>;
    runFused?(first: number, feeds: Feeds): Promise<StageResult>;
    readonly fused?: readonly number[];
  },
  model: ModelDir,
  ep: ExecutionProvider,
  images = 2,
): Promise<ParityReport> {
  const fused = runner.fused ?? [];
  if (ep === 'cpu' && fused.length === 0) return { images: 0, maxRelativeDiff: 0 };
  const m = model.manifest;
  const size = elementCount(m.input.shape);
  const image = new Uint8Array(images * size).map((_, i) => (i * 7919 + 13) % 256);
  const cpu = await StageRunner.create(model, { executionProvider: 'cpu', threads: 1 });
  let worst = 0;
  // Each stage against the CPU provider's, fed the CPU's state; then each joined graph against the CPU's stages.
  const compare = (what: string, want: Feeds, got: Feeds) => {
    for (const [name, w] of Object.entries(want)) {
      const g = got[name]?.data;
      if (!g || g.length !== w.data.length)
        throw new ConfigError(`execution provider ${ep}: ${what} of ${m.name} returned no ${name} of its shape`);
      let scale = 1;
      let diff = 0;
      for (let i = 0; i < w.data.length; i++) {
        scale = Math.max(scale, Math.abs(w.data[i]!));
        diff = Math.max(diff, Math.abs(w.data[i]! - g[i]!));
      }
      if (!(diff <= PARITY_TOLERANCE * scale))
        throw new ConfigError(
          `execution provider ${ep} miscomputes ${what} of ${m.name}@${m.version}: output ${name} differs from ` +
            `the CPU provider's by ${diff.toPrecision(3)} (largest value ${scale.toPrecision(3)}); this worker ` +
            'would answer wrongly, so it does not start: run it with --ep cpu, or another onnxruntime build',
        );
      worst = Math.max(worst, diff / scale);
    }
  };
  try {
    let carried: Feeds = {};
    const inputs: Feeds[] = [];
    const logits: Feeds = {};
    for (let s = 0; s < m.stages.length; s++) {
      const feeds: Feeds = { image: { data: image, dims: [images, ...m.input.shape] } };
      for (const t of m.stages[s]!.inputs) if (t.name !== 'image') feeds[t.name] = carried[t.name]!;
      inputs.push(copy(feeds));
      const want = (await cpu.run(s, copy(feeds))).outputs;
      for (const e of m.stages[s]!.exits) logits[m.exits[e]!.output] = want[m.exits[e]!.output]!;
      if (ep !== 'cpu') compare(`stage ${s}`, want, (await runner.run(s, copy(feeds))).outputs);
      carried = want;
    }
    for (const f of fused) {
      const want = Object.fromEntries(fusedOutputs(m, f).map((name) => [name, logits[name]!]));
      compare(`stages ${f}.. as one graph`, want, (await runner.runFused!(f, copy(inputs[f]!))).outputs);
    }
  } finally {
    await cpu.close();
  }
  return { images, maxRelativeDiff: worst };
}
