import { decodeTensorInto, elementCount, ErrorCode } from '@cascade/proto';
import {
  decide,
  InferenceError,
  softmax,
  type ExitRule,
  type Feeds,
  type Manifest,
  type StagePass,
  type StageRunner,
} from '@cascade/runtime';
import type { ValidRequest } from './validate.js';

/** What a request ends with: a prediction or a coded error. Exactly one per request. */
export type JobReply =
  | {
      kind: 'prediction';
      classIndex: number;
      confidence: number;
      exit: number;
      probabilities?: number[];
      /** With all_exits: what every exit computed said, with its probabilities. */
      exits?: ExitView[];
      queueMs: number;
      computeMs: number;
      batchSize: number;
    }
  | { kind: 'error'; code: ErrorCode; message: string };

/** One exit's class and confidence for a frame (all_exits). */
export interface ExitView {
  exit: number;
  classIndex: number;
  confidence: number;
  probabilities?: number[];
}

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
  /** Shadow requests queued at most; more are refused (OVERLOADED). @default maxBatch */
  shadowLimit?: number;
  /**
   * Largest batch of shadow requests: a regular request that arrives while one computes waits for it, so it is kept
   * small. @default 4
   */
  shadowBatch?: number;
}

/** Hooks for metrics; called on the event loop. */
export interface BatchObserver {
  batch(size: number, queuedSeconds: number[]): void;
  stage(stage: number, seconds: number): void;
}

/**
 * A bounded queue that forms batches (up to maxBatch, waiting at most maxDelayMs for the oldest request) and runs
 * them through the stages, letting confident frames leave at each cloud exit before the next stage.
 * Shadow requests (frames the edge has already answered) wait in a queue of their own, run only while no regular
 * request waits and no batch computes, and are refused first: whenever a regular request waits, or their queue is
 * full.
 */
export class Batcher {
  private readonly queue: Job[] = [];
  private readonly shadows: Job[] = [];
  private inFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly runner: StageRunner,
    private readonly manifest: Manifest,
    private readonly options: BatcherOptions,
    private readonly observer?: BatchObserver,
  ) {}

  /** Regular requests waiting. */
  get depth(): number {
    return this.queue.length;
  }

  /** Shadow requests waiting. */
  get shadowDepth(): number {
    return this.shadows.length;
  }

  /** Queues a job, or answers OVERLOADED at once when the queue is full. */
  submit(job: Job): void {
    if (job.req.shadow) {
      const limit = this.options.shadowLimit ?? this.options.maxBatch;
      if (this.queue.length > 0 || this.shadows.length >= limit) {
        const why =
          this.queue.length > 0 ? `${this.queue.length} regular requests wait` : `shadow queue full (${limit})`;
        job.reply({ kind: 'error', code: ErrorCode.OVERLOADED, message: `shadow request refused: ${why}` });
        return;
      }
      this.shadows.push(job);
      this.schedule();
      return;
    }
    if (this.queue.length >= this.options.queueLimit) {
      job.reply({ kind: 'error', code: ErrorCode.OVERLOADED, message: `queue full (${this.options.queueLimit})` });
      return;
    }
    this.queue.push(job);
    this.schedule();
  }

  /** Resolves once the queue is empty and no batch is running. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0 && this.shadows.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.queue.length === 0) {
      if (this.shadows.length > 0 && this.inFlight === 0) void this.runNext(this.shadows);
      return;
    }
    if (this.inFlight >= (this.options.batchesInFlight ?? 1)) return;
    const waited = performance.now() - this.queue[0]!.enqueuedAt;
    if (this.queue.length >= this.options.maxBatch || waited >= this.options.maxDelayMs) {
      clearTimeout(this.timer);
      this.timer = undefined;
      void this.runNext(this.queue);
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, this.options.maxDelayMs - waited);
    }
  }

  private async runNext(queue: Job[]): Promise<void> {
    this.inFlight++;
    try {
      const first = queue[0]!.req.firstStage;
      const cap =
        queue === this.shadows ? Math.min(this.options.shadowBatch ?? 4, this.options.maxBatch) : this.options.maxBatch;
      const jobs: Job[] = [];
      const rest: Job[] = [];
      const now = Date.now();
      for (const job of queue.splice(0)) {
        if (job.req.deadlineUnixMs > 0 && job.req.deadlineUnixMs <= now) {
          job.reply({ kind: 'error', code: ErrorCode.EXPIRED, message: 'deadline passed while queued' });
        } else if (job.req.firstStage === first && jobs.length < cap) {
          jobs.push(job);
        } else {
          rest.push(job);
        }
      }
      for (const job of rest) queue.push(job); // no spread: the queue may hold many thousands
      if (jobs.length > 0) {
        const batch = this.runBatch(jobs, first);
        this.schedule(); // a second batch may start while this one computes
        await batch;
      }
    } finally {
      this.inFlight--;
      if (this.queue.length === 0 && this.shadows.length === 0 && this.inFlight === 0) {
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
    const replied = new Uint8Array(size);
    try {
      const exits = m.exits.length;
      const rule: ExitRule = { thresholds: new Float64Array(size * exits), allExits: new Uint8Array(size) };
      jobs.forEach((j, r) => {
        rule.thresholds.set(j.req.thresholds, r * exits);
        rule.allExits[r] = j.req.allExits ? 1 : 0;
      });
      // One hand-off for the whole batch: the runner's thread runs the stages and drops the rows that leave; each
      // stage's pass comes back as it finishes, so frames that leave early are answered while later stages compute.
      const answer = this.answerer(jobs, replied, started);
      await this.runner.runCascade(first, batchInputs(jobs, m, first), rule, answer);
      const lost = jobs.findIndex((_, j) => !replied[j]);
      if (lost >= 0) throw new InferenceError(`the stages left request ${jobs[lost]!.req.requestId} without an answer`);
    } catch (err) {
      jobs.forEach((job, j) => {
        if (replied[j]) return;
        replied[j] = 1;
        job.reply({ kind: 'error', code: ErrorCode.INTERNAL, message: `inference failed: ${(err as Error).message}` });
      });
    }
  }

  /**
   * What answers a batch's jobs pass by pass: each at the exit the runner's pass names for it (runCascade applies
   * the exit rule, here it is not applied again), and with all_exits with what every exit said up to the last.
   */
  private answerer(jobs: Job[], replied: Uint8Array, started: number): (pass: StagePass) => void {
    const m = this.manifest;
    const classes = m.classes.length;
    const size = jobs.length;
    const answers = new Map<number, { exit: number; classIndex: number; confidence: number; row: Float32Array }>();
    const views = new Map<number, ExitView[]>();
    let computeMs = 0;
    return (pass) => {
      computeMs += pass.computeMs;
      if (!pass.joined) this.observer?.stage(pass.stage, pass.computeMs / 1000); // joined: the whole run, once
      for (const e of m.stages[pass.stage]!.exits) {
        const logits = pass.logits[e]!;
        const last = e === m.exits.length - 1;
        pass.rows.forEach((j, p) => {
          const job = jobs[j]!;
          if (replied[j]) return;
          const row = logits.subarray(p * classes, (p + 1) * classes);
          const bad = row.findIndex((x) => !Number.isFinite(x));
          if (bad >= 0) {
            // Finite inputs can still overflow inside the stages (a carried state near float32's limit); never
            // answer a prediction computed from them.
            replied[j] = 1;
            job.reply({
              kind: 'error',
              code: ErrorCode.BAD_REQUEST,
              message:
                `exit ${e} computed a non-finite logit (${row[bad]}) for this request: its state is outside the ` +
                'range the model computes in',
            });
            return;
          }
          const d = decide(row);
          if (job.req.allExits) {
            const list = views.get(j) ?? [];
            views.set(j, list);
            list.push({ exit: e, ...d, probabilities: Array.from(softmax(row)) });
          }
          if (!answers.has(j) && pass.exitAt[p] === e) answers.set(j, { exit: e, ...d, row: row.slice() });
          if (!answers.has(j) || (job.req.allExits && !last)) return;
          const a = answers.get(j)!;
          replied[j] = 1;
          job.reply({
            kind: 'prediction',
            classIndex: a.classIndex,
            confidence: a.confidence,
            exit: a.exit,
            ...(job.req.returnProbabilities ? { probabilities: Array.from(softmax(a.row)) } : {}),
            ...(job.req.allExits ? { exits: views.get(j)! } : {}),
            queueMs: started - job.enqueuedAt,
            computeMs,
            batchSize: size,
          });
        });
      }
    };
  }
}

/** Stage `first`'s inputs for a batch: the images, and each carried state decoded straight into its batch rows. */
function batchInputs(jobs: Job[], m: Manifest, first: number): Feeds {
  const pixels = elementCount(m.input.shape);
  const image = new Uint8Array(jobs.length * pixels);
  jobs.forEach((j, r) => image.set(j.req.image, r * pixels));
  const feeds: Feeds = { image: { data: image, dims: [jobs.length, ...m.input.shape] } };
  for (const spec of m.stages[first]!.inputs) {
    if (spec.name === 'image') continue;
    const dims = [jobs.length, ...spec.shape.slice(1)];
    const per = elementCount(dims.slice(1));
    const data = new Float32Array(jobs.length * per);
    jobs.forEach((j, r) => decodeTensorInto(j.req.state.get(spec.name)!, data, r * per));
    feeds[spec.name] = { data, dims };
  }
  return feeds;
}
