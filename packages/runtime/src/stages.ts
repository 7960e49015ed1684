import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as ortTypes from 'onnxruntime-node';
import type { ModelDir } from './manifest.js';
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
}

/** onnxruntime sessions for a range of stages, run on the calling thread (use StageRunner to keep it off the event loop). */
export class StageSessions {
  private constructor(
    private readonly model: ModelDir,
    private readonly sessions: Map<number, ortTypes.InferenceSession>,
    private readonly ort: Ort,
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
    for (let s = first; s <= last; s++) {
      const spec = model.manifest.stages[s];
      if (!spec) throw new RangeError(`stage ${s} does not exist: the model has ${model.manifest.stages.length}`);
      const bytes = new Uint8Array(await readFile(join(model.path, spec.file)));
      sessions.set(s, await ort.InferenceSession.create(bytes, opts));
    }
    return new StageSessions(model, sessions, ort);
  }

  /** Runs one stage; `feeds` must hold every input the manifest names for it. */
  async run(stage: number, feeds: Feeds): Promise<Feeds> {
    const session = this.sessions.get(stage);
    const spec = this.model.manifest.stages[stage];
    if (!session || !spec) throw new RangeError(`stage ${stage} is not loaded`);
    const inputs: Record<string, ortTypes.Tensor> = {};
    for (const t of spec.inputs) {
      const f = feeds[t.name];
      if (!f) throw new CascadeError(ERROR_CODES.INFERENCE, `stage ${stage}: input "${t.name}" missing`);
      inputs[t.name] = new this.ort.Tensor(t.dtype, f.data, f.dims);
    }
    const out = await session.run(inputs);
    const result: Feeds = {};
    for (const t of spec.outputs) {
      const v = out[t.name];
      if (!v) throw new CascadeError(ERROR_CODES.INFERENCE, `stage ${stage}: output "${t.name}" missing`);
      result[t.name] = { data: v.data as Float32Array, dims: [...v.dims] };
    }
    return result;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
    this.sessions.clear();
  }
}
