import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as ortTypes from 'onnxruntime-node';
import { fuseStages, fusedOutputs } from './fuse.js';
import type { ModelDir, StageSpec } from './manifest.js';
import { CascadeError, ERROR_CODES } from '@cascade/proto';

type Ort = typeof ortTypes;

/** A tensor as the stage runner moves it: flat data and its dims (batch first). */
export interface HostTensor {
  data: Float32Array | Uint8Array;
  dims: number[];
}
export type Feeds = Record<string, HostTensor>;

export const EXECUTION_PROVIDERS = ['cpu', 'webgpu', 'cuda'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** `node`: onnxruntime-node (native). `web`: onnxruntime-web (WebAssembly), for devices without native binaries. */
export const BACKENDS = ['node', 'web'] as const;
export type Backend = (typeof BACKENDS)[number];

async function loadOrt(backend: Backend, threads: number): Promise<Ort> {
  if (backend === 'node') return import('onnxruntime-node');
  const web = (await import('onnxruntime-web')) as unknown as Ort & { env: { wasm: { numThreads: number } } };
  web.env.wasm.numThreads = threads || 1;
  return web;
}

export interface StageSessionOptions {
  /** First and last stage (inclusive) to load. @default all stages */
  first?: number;
  last?: number;
  /** @default 'cpu' */
  executionProvider?: ExecutionProvider;
  /** @default 'node' */
  backend?: Backend;
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose. @default 0 */
  threads?: number;
  /**
   * First stages from which the rest of the model also runs as one joined graph (fuse.ts): carried states stay
   * inside onnxruntime (on the GPU) instead of crossing to the host between stages. @default none
   */
  fused?: number[];
}

/** onnxruntime sessions for a range of stages, run on the calling thread (use StageRunner to keep it off the event loop). */
export class StageSessions {
  private constructor(
    private readonly model: ModelDir,
    private readonly sessions: Map<number, ortTypes.InferenceSession>,
    private readonly ort: Ort,
    private readonly joined: Map<number, ortTypes.InferenceSession>,
  ) {}

  static async create(model: ModelDir, options: StageSessionOptions = {}): Promise<StageSessions> {
    const first = options.first ?? 0;
    const last = options.last ?? model.manifest.stages.length - 1;
    const backend = options.backend ?? 'node';
    const ort = await loadOrt(backend, options.threads ?? 0);
    // Exactly the provider asked for: onnxruntime refuses to create the session if it cannot, never a silent CPU.
    const providers = backend === 'web' ? ['wasm'] : [options.executionProvider ?? 'cpu'];
    const opts: ortTypes.InferenceSession.SessionOptions = {
      executionProviders: providers,
      graphOptimizationLevel: 'all',
      logSeverityLevel: 3, // errors only: node-placement notices are not for operators
      ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
    };
    const sessions = new Map<number, ortTypes.InferenceSession>();
    const bytes = new Map<number, Uint8Array>();
    for (let s = first; s <= last; s++) {
      const spec = model.manifest.stages[s];
      if (!spec) throw new RangeError(`stage ${s} does not exist: the model has ${model.manifest.stages.length}`);
      bytes.set(s, new Uint8Array(await readFile(join(model.path, spec.file))));
      sessions.set(s, await ort.InferenceSession.create(bytes.get(s)!, opts));
    }
    const joined = new Map<number, ortTypes.InferenceSession>();
    const n = model.manifest.stages.length;
    for (const f of options.fused ?? []) {
      if (f < first || f > n - 2 || last !== n - 1)
        throw new RangeError(`fused from stage ${f}: needs stages ${f}..${n - 1} loaded (${first}..${last} are)`);
      const graphs = model.manifest.stages.slice(f).map((s) => bytes.get(s.index)!);
      joined.set(f, await ort.InferenceSession.create(fuseStages(model.manifest, f, graphs), opts));
    }
    return new StageSessions(model, sessions, ort, joined);
  }

  /** First stages this instance runs as one joined graph. */
  get fused(): number[] {
    return [...this.joined.keys()];
  }

  /**
   * Stages `first`.. as one graph: `feeds` holds stage `first`'s inputs; the result every later exit's logits
   * (fusedOutputs), no carried state.
   */
  async runFused(first: number, feeds: Feeds): Promise<Feeds> {
    const session = this.joined.get(first);
    const spec = this.model.manifest.stages[first];
    if (!session || !spec) throw new RangeError(`stages ${first}.. are not loaded as one graph`);
    const out = await session.run(this.inputs(first, spec, feeds));
    return this.outputs(first, fusedOutputs(this.model.manifest, first), out);
  }

  private inputs(stage: number, spec: StageSpec, feeds: Feeds): Record<string, ortTypes.Tensor> {
    const inputs: Record<string, ortTypes.Tensor> = {};
    for (const t of spec.inputs) {
      const f = feeds[t.name];
      if (!f) throw new CascadeError(ERROR_CODES.INFERENCE, `stage ${stage}: input "${t.name}" missing`);
      inputs[t.name] = new this.ort.Tensor(t.dtype, f.data, f.dims);
    }
    return inputs;
  }

  private outputs(stage: number, names: string[], out: ortTypes.InferenceSession.ReturnType): Feeds {
    const result: Feeds = {};
    for (const name of names) {
      const v = out[name];
      if (!v) throw new CascadeError(ERROR_CODES.INFERENCE, `stage ${stage}: output "${name}" missing`);
      result[name] = { data: v.data as Float32Array, dims: [...v.dims] };
    }
    return result;
  }

  /** Runs one stage; `feeds` must hold every input the manifest names for it. */
  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const session = this.sessions.get(stage);
    const spec = this.model.manifest.stages[stage];
    if (!session || !spec) throw new RangeError(`stage ${stage} is not loaded`);
    const out = await session.run(this.inputs(stage, spec, feeds));
    return this.outputs(
      stage,
      spec.outputs.map((t) => t.name),
      out,
    );
  }

  async release(): Promise<void> {
    for (const s of [...this.sessions.values(), ...this.joined.values()]) await s.release();
    this.sessions.clear();
    this.joined.clear();
  }
}
