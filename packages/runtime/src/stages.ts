import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { ModelDir } from './manifest.js';

/** A tensor as the stage runner moves it: flat data and its dims (batch first). */
export interface HostTensor {
  data: Float32Array | Uint8Array;
  dims: number[];
}
export type Feeds = Record<string, HostTensor>;

export const EXECUTION_PROVIDERS = ['cpu', 'cuda'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export interface StageSessionOptions {
  /** First and last stage (inclusive) to load. @default all stages */
  first?: number;
  last?: number;
  /** @default 'cpu' */
  executionProvider?: ExecutionProvider;
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose. @default 0 */
  threads?: number;
}

/** onnxruntime sessions for a range of stages, run on the calling thread (use StageRunner to keep it off the event loop). */
export class StageSessions {
  private constructor(
    private readonly model: ModelDir,
    private readonly sessions: Map<number, ort.InferenceSession>,
  ) {}

  static async create(model: ModelDir, options: StageSessionOptions = {}): Promise<StageSessions> {
    const first = options.first ?? 0;
    const last = options.last ?? model.manifest.stages.length - 1;
    const opts: ort.InferenceSession.SessionOptions = {
      executionProviders: options.executionProvider === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
      graphOptimizationLevel: 'all',
      ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
    };
    const sessions = new Map<number, ort.InferenceSession>();
    for (let s = first; s <= last; s++) {
      const spec = model.manifest.stages[s];
      if (!spec) throw new RangeError(`stage ${s} does not exist: the model has ${model.manifest.stages.length}`);
      sessions.set(s, await ort.InferenceSession.create(join(model.path, spec.file), opts));
    }
    return new StageSessions(model, sessions);
  }

  /** Runs one stage; `feeds` must hold every input the manifest names for it. */
  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const session = this.sessions.get(stage);
    const spec = this.model.manifest.stages[stage];
    if (!session || !spec) throw new RangeError(`stage ${stage} is not loaded`);
    const inputs: Record<string, ort.Tensor> = {};
    for (const t of spec.inputs) {
      const f = feeds[t.name];
      if (!f) throw new Error(`stage ${stage}: input "${t.name}" missing`);
      inputs[t.name] = new ort.Tensor(t.dtype, f.data, f.dims);
    }
    const out = await session.run(inputs);
    const result: Feeds = {};
    for (const t of spec.outputs) {
      const v = out[t.name];
      if (!v) throw new Error(`stage ${stage}: output "${t.name}" missing`);
      result[t.name] = { data: v.data as Float32Array, dims: [...v.dims] };
    }
    return result;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }
}
