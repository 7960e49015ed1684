import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { ExitRule, StagePass } from './cascade.js';
import type { ModelDir } from './manifest.js';
import { providerHelp } from './providers.js';
import type { Feeds, StageSessionOptions } from './stages.js';
import { CascadeError, ConfigError, elementCount, ERROR_CODES } from '@cascade/proto';

/** Thrown when inference fails in the worker thread; the message is onnxruntime's. */
export class InferenceError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.INFERENCE, message, options);
  }
}

/** A message from the stage thread: a stage's outputs, a pass of a cascade run, its end, or an error. */
interface RunReply {
  id: number;
  out?: Feeds;
  ms?: number;
  pass?: StagePass;
  done?: boolean;
  error?: string;
}

export interface StageResult {
  outputs: Feeds;
  /** Wall time of session.run() inside the worker thread. */
  computeMs: number;
}

function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  // Under a TypeScript loader (tests) this module is src/runner.ts; the worker always runs the compiled file.
  const compiled = here.endsWith('.ts')
    ? join(dirname(here), '..', 'dist', 'stage-worker.js')
    : join(dirname(here), 'stage-worker.js');
  if (!existsSync(compiled))
    throw new CascadeError(
      ERROR_CODES.DEPENDENCY,
      `${compiled} is missing: build @cascade/runtime first (pnpm run build)`,
    );
  return compiled;
}

/**
 * Runs stages in a dedicated worker thread so that onnxruntime's blocking run() never stalls the event loop
 * (NATS heartbeats, /metrics). Calls are queued in order; tensors move by transfer, not copy.
 */
export class StageRunner {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (r: unknown) => void; reject: (e: Error) => void; onPass?: (pass: StagePass) => void }
  >();
  private closed = false;

  private constructor(
    private readonly worker: Worker,
    /** First stages from which this runner runs the rest as one joined graph (runFused). */
    readonly fused: readonly number[],
  ) {
    worker.on('message', (msg: RunReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      if (msg.pass) {
        try {
          p.onPass?.(msg.pass);
        } catch (err) {
          this.pending.delete(msg.id); // the caller gave up on this run; the rest of its passes are dropped
          p.reject(err as Error);
        }
        return;
      }
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new InferenceError(msg.error));
      else if (msg.done) p.resolve(undefined);
      else p.resolve({ outputs: msg.out!, computeMs: msg.ms! });
    });
    worker.on('error', (err) => this.failAll(err));
    worker.on('exit', (code) => this.failAll(new InferenceError(`stage worker exited with code ${code}`)));
  }

  static async create(model: ModelDir, options: StageSessionOptions = {}): Promise<StageRunner> {
    const worker = new Worker(workerFile(), { workerData: { model, options } });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (msg: { ready?: boolean; error?: string }) => {
        if (msg.ready === undefined) return;
        worker.off('message', onMessage);
        if (msg.ready) resolve();
        else if (options.executionProvider && options.executionProvider !== 'cpu' && options.backend !== 'web') {
          reject(new ConfigError(providerHelp(options.executionProvider, msg.error ?? '')));
        } else reject(new InferenceError(`cannot load stages of ${model.path}: ${msg.error}`));
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
    });
    return new StageRunner(worker, options.fused ?? []);
  }

  /** Runs one stage on a batch. Input buffers are transferred: do not reuse them after the call. */
  run(stage: number, feeds: Feeds): Promise<StageResult> {
    return this.post(stage, feeds, false);
  }

  /**
   * Runs stages `first`.. as one joined graph (created with `fused` holding `first`): `feeds` are stage `first`'s
   * inputs, the outputs every later exit's logits. Input buffers are transferred.
   */
  runFused(first: number, feeds: Feeds): Promise<StageResult> {
    if (!this.fused.includes(first))
      return Promise.reject(new InferenceError(`stages ${first}.. are not loaded as one graph`));
    return this.post(first, feeds, true);
  }

  /**
   * Runs a batch from stage `first` to where its last row leaves, in one hand-off (runCascade): the carried state
   * stays in the thread, and each stage's pass comes to `onPass` as soon as the stage has run. Resolves after the
   * last pass. Stages `first`.. run as one joined graph when the runner was created with `fused` holding `first`.
   * Input and rule buffers are transferred.
   */
  runCascade(first: number, feeds: Feeds, rule: ExitRule, onPass: (pass: StagePass) => void): Promise<void> {
    return this.post(first, feeds, this.fused.includes(first), { rule, onPass });
  }

  private post(stage: number, feeds: Feeds, fused: boolean): Promise<StageResult>;
  private post(
    stage: number,
    feeds: Feeds,
    fused: boolean,
    cascade: { rule: ExitRule; onPass: (pass: StagePass) => void },
  ): Promise<void>;
  private post(
    stage: number,
    feeds: Feeds,
    fused: boolean,
    cascade?: { rule: ExitRule; onPass: (pass: StagePass) => void },
  ): Promise<StageResult | void> {
    const rule = cascade?.rule;
    if (this.closed) return Promise.reject(new InferenceError('stage runner is closed'));
    // A buffer already handed to the thread is detached (empty): posting it would lose the message, and the call
    // would never settle.
    for (const [name, t] of Object.entries(feeds)) {
      if (t.data.length !== elementCount(t.dims))
        return Promise.reject(
          new InferenceError(`stage ${stage}: input "${name}" holds ${t.data.length} values for dims [${t.dims}]`),
        );
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (r: unknown) => void,
        reject,
        ...(cascade ? { onPass: cascade.onPass } : {}),
      });
      const buffers = Object.values(feeds).map((t) => t.data.buffer as ArrayBuffer);
      if (rule) buffers.push(rule.thresholds.buffer as ArrayBuffer, rule.allExits.buffer as ArrayBuffer);
      this.worker.postMessage({ id, stage, feeds, ...(fused ? { fused } : {}), ...(rule ? { rule } : {}) }, [
        ...new Set(buffers),
      ]);
    });
  }

  private failAll(err: Error): void {
    this.closed = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** Releases the sessions and ends the worker thread; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exited = new Promise((resolve) => this.worker.once('exit', resolve));
    this.worker.postMessage('close');
    await exited;
  }
}
