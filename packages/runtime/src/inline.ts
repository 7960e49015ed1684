import type { ModelDir } from './manifest.js';
import { InferenceError, StageRunner, type StageResult } from './runner.js';
import { StageSessions, type Feeds, type StageSessionOptions } from './stages.js';

/** What runs stages for an agent: on a worker thread (`StageRunner`) or on the calling thread (`InlineRunner`). */
export interface StageExecutor {
  run(stage: number, feeds: Feeds): Promise<StageResult>;
  close(): Promise<void>;
}

/**
 * Stages on the calling thread: no hand-off, but onnxruntime's run() holds the event loop for as long as it computes.
 * Worth it only for stages that compute in a fraction of a millisecond (an edge's first stage), where the hand-off to
 * a worker thread costs more than the stage.
 */
export class InlineRunner implements StageExecutor {
  private closed = false;

  private constructor(private readonly sessions: StageSessions) {}

  static async create(model: ModelDir, options: StageSessionOptions = {}): Promise<InlineRunner> {
    return new InlineRunner(await StageSessions.create(model, options));
  }

  async run(stage: number, feeds: Feeds): Promise<StageResult> {
    if (this.closed) throw new InferenceError('stage runner is closed');
    const t = performance.now();
    try {
      const outputs = await this.sessions.run(stage, feeds);
      return { outputs, computeMs: performance.now() - t };
    } catch (err) {
      throw new InferenceError((err as Error).message, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sessions.release();
  }
}

export const INFERENCE_THREADS = ['auto', 'inline', 'worker'] as const;
export type InferenceThread = (typeof INFERENCE_THREADS)[number];

/** With `auto`, stages whose median compute (all of them, one frame) is below this run inline. */
export const INLINE_MAX_MS = 1;

/**
 * The executor for stages `first..last`: `inline`, `worker`, or `auto`, which times the stages on the calling thread
 * (30 runs of `probe` after 10 to warm up) and keeps them there when their median is under INLINE_MAX_MS, else moves
 * them to a worker thread. The time of a run is its wall time, or its CPU time when that is less: under a CPU quota (a
 * container's or a camera's cgroup) the wall time also counts the wait for the quota, which a worker thread would wait
 * for as well, and the hand-off would only cost more of the quota. Says which it chose and why.
 */
export async function createExecutor(
  model: ModelDir,
  options: StageSessionOptions & { thread: InferenceThread; probe: () => Feeds },
): Promise<{ executor: StageExecutor; thread: 'inline' | 'worker'; medianMs?: number }> {
  const { thread, probe, ...sessionOptions } = options;
  if (thread === 'worker') return { executor: await StageRunner.create(model, sessionOptions), thread: 'worker' };
  const inline = await InlineRunner.create(model, sessionOptions);
  if (thread === 'inline') return { executor: inline, thread: 'inline' };
  const first = sessionOptions.first ?? 0;
  const last = sessionOptions.last ?? model.manifest.stages.length - 1;
  const once = async () => {
    let carried: Feeds = {};
    const t = performance.now();
    const cpu = process.cpuUsage();
    for (let s = first; s <= last; s++) {
      const feeds = probe();
      for (const spec of model.manifest.stages[s]!.inputs)
        if (!feeds[spec.name]) feeds[spec.name] = carried[spec.name]!;
      carried = (await inline.run(s, feeds)).outputs;
    }
    const used = process.cpuUsage(cpu);
    return Math.min(performance.now() - t, (used.user + used.system) / 1000);
  };
  for (let i = 0; i < 10; i++) await once();
  const times: number[] = [];
  for (let i = 0; i < 30; i++) times.push(await once());
  const medianMs = times.sort((a, b) => a - b)[15]!;
  if (medianMs < INLINE_MAX_MS) return { executor: inline, thread: 'inline', medianMs };
  await inline.close();
  return { executor: await StageRunner.create(model, sessionOptions), thread: 'worker', medianMs };
}
