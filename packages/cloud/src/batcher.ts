import { ErrorCode } from '@cascade/proto';
import { decide, exitsHere, softmax, type Feeds, type Manifest, type StageRunner } from '@cascade/runtime';
import type { ValidRequest } from './validate.js';

/** What a request ends with: a prediction or a coded error. Exactly one per request. */
export type JobReply =
  | {
      kind: 'prediction';
      classIndex: number;
      confidence: number;
      exit: number;
      probabilities?: number[];
      queueMs: number;
      computeMs: number;
      batchSize: number;
    }
  | { kind: 'error'; code: ErrorCode; message: string };

export interface Job {
  req: ValidRequest;
  enqueuedAt: number;
  reply: (o: JobReply) => void;
}

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  queueLimit: number;
  /** Batches being computed at once. @default 1 */
  batchesInFlight?: number;
}

/** Hooks for metrics; called on the event loop. */
export interface BatchObserver {
  batch(size: number, queuedSeconds: number[]): void;
  stage(stage: number, seconds: number): void;
}

/**
 * A bounded queue that forms batches (up to maxBatch, waiting at most maxDelayMs for the oldest request) and runs
 * them through the stages, letting confident frames leave at each cloud exit before the next stage.
 */
export class Batcher {
  private readonly queue: Job[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly runner: StageRunner,
    private readonly manifest: Manifest,
    private readonly options: BatcherOptions,
    private readonly observer?: BatchObserver,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  /** Queues a job, or answers OVERLOADED at once when the queue is full. */
  submit(job: Job): void {
    if (this.queue.length >= this.options.queueLimit) {
      job.reply({ kind: 'error', code: ErrorCode.OVERLOADED, message: `queue full (${this.options.queueLimit})` });
      return;
    }
    this.queue.push(job);
    this.schedule();
  }

  /** Resolves once the queue is empty and no batch is running. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.inFlight >= (this.options.batchesInFlight ?? 1) || this.queue.length === 0) return;
    const waited = performance.now() - this.queue[0]!.enqueuedAt;
    if (this.queue.length >= this.options.maxBatch || waited >= this.options.maxDelayMs) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.runNext();
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, this.options.maxDelayMs - waited);
    }
  }

  private async runNext(): Promise<void> {
    this.inFlight++;
    try {
      const first = this.queue[0]!.req.firstStage;
      const jobs: Job[] = [];
      const rest: Job[] = [];
      const now = Date.now();
      for (const job of this.queue.splice(0)) {
        if (job.req.deadlineUnixMs > 0 && job.req.deadlineUnixMs <= now) {
          job.reply({ kind: 'error', code: ErrorCode.EXPIRED, message: 'deadline passed while queued' });
        } else if (job.req.firstStage === first && jobs.length < this.options.maxBatch) {
          jobs.push(job);
        } else {
          rest.push(job);
        }
      }
      for (const job of rest) this.queue.push(job); // no spread: the queue may hold many thousands
      if (jobs.length > 0) {
        const batch = this.runBatch(jobs, first);
        this.schedule(); // a second batch may start while this one computes
        await batch;
      }
    } finally {
      this.inFlight--;
      if (this.queue.length === 0 && this.inFlight === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
      } else {
        this.schedule();
      }
    }
  }

  private async runBatch(jobs: Job[], first: number): Promise<void> {
    const m = this.manifest;
    const started = performance.now();
    const size = jobs.length;
    this.observer?.batch(
      size,
      jobs.map((j) => (started - j.enqueuedAt) / 1000),
    );
    const pixels = m.input.shape.reduce((a, b) => a * b, 1);
    let active = jobs.map((_, i) => i);
    let carried: Feeds = {};
    for (const name of jobs[0]!.req.state.keys())
      carried[name] = stack(
        jobs.map((j) => j.req.state.get(name)!),
        m,
        name,
      );
    let computeMs = 0;
    try {
      for (let s = first; s < m.stages.length && active.length > 0; s++) {
        const stage = m.stages[s]!;
        const image = new Uint8Array(active.length * pixels);
        active.forEach((j, r) => image.set(jobs[j]!.req.image, r * pixels));
        const feeds: Feeds = { image: { data: image, dims: [active.length, ...m.input.shape] } };
        for (const t of stage.inputs) if (t.name !== 'image') feeds[t.name] = carried[t.name]!;
        const { outputs, computeMs: ms } = await this.runner.run(s, feeds);
        computeMs += ms;
        this.observer?.stage(s, ms / 1000);
        const leaving = new Set<number>();
        for (const e of stage.exits) {
          const logits = outputs[m.exits[e]!.output]!.data as Float32Array;
          const classes = m.classes.length;
          active.forEach((j, r) => {
            if (leaving.has(r)) return;
            const row = logits.subarray(r * classes, (r + 1) * classes);
            const d = decide(row);
            const job = jobs[j]!;
            if (!exitsHere(e, d.confidence, job.req.thresholds)) return;
            leaving.add(r);
            job.reply({
              kind: 'prediction',
              classIndex: d.classIndex,
              confidence: d.confidence,
              exit: e,
              ...(job.req.returnProbabilities ? { probabilities: Array.from(softmax(row)) } : {}),
              queueMs: started - job.enqueuedAt,
              computeMs,
              batchSize: size,
            });
          });
        }
        const keep = active.map((_, r) => r).filter((r) => !leaving.has(r));
        carried = {};
        for (const [name, t] of Object.entries(outputs)) carried[name] = takeRows(t, keep);
        active = keep.map((r) => active[r]!);
      }
    } catch (err) {
      for (const j of active) {
        jobs[j]!.reply({
          kind: 'error',
          code: ErrorCode.INTERNAL,
          message: `inference failed: ${(err as Error).message}`,
        });
      }
    }
  }
}

function stack(rows: Float32Array[], m: Manifest, name: string): { data: Float32Array; dims: number[] } {
  const per = rows[0]!.length;
  const data = new Float32Array(rows.length * per);
  rows.forEach((r, i) => data.set(r, i * per));
  const spec = m.stages.flatMap((s) => s.outputs).find((t) => t.name === name)!;
  return { data, dims: [rows.length, ...spec.shape.slice(1)] };
}

function takeRows(t: { data: Float32Array | Uint8Array; dims: number[] }, rows: number[]) {
  const per = t.dims.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(rows.length * per);
  const src = t.data as Float32Array;
  rows.forEach((r, i) => data.set(src.subarray(r * per, (r + 1) * per), i * per));
  return { data, dims: [rows.length, ...t.dims.slice(1)] };
}
