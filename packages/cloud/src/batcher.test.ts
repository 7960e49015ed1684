import { encodeTensor, ErrorCode } from '@cascade/proto';
import {
  carriedOutputs,
  decide,
  exitsHere,
  loadModelDir,
  operatingPoint,
  StageRunner,
  type ExitRule,
  type Feeds,
  type StagePass,
} from '@cascade/runtime';
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { Batcher, type Job, type JobReply } from './batcher.js';
import type { ValidRequest } from './validate.js';

const REPO = new URL('../../../', import.meta.url).pathname;
const model = await loadModelDir(`${REPO}models/ranet-cifar10`);
const m = model.manifest;
const runner = await StageRunner.create(model, { threads: 1 });
const samples = readFileSync(`${REPO}samples/cifar10-test-1000.bin`);
const image = (i: number) => new Uint8Array(samples.subarray(i * 3073 + 1, (i + 1) * 3073));
const never = m.exits.map((_, i) => (i === m.exits.length - 1 ? 0 : 2)); // every frame to the last exit

afterAll(() => runner.close());

function request(i: number, over: Partial<ValidRequest> = {}): ValidRequest {
  return {
    requestId: `r${i}`, modelVersion: m.version, edgeId: 'e', firstStage: 0, image: image(i), state: new Map(),
    deadlineUnixMs: Date.now() + 30_000, returnProbabilities: false, thresholds: operatingPoint(m).thresholds, shadow: false, allExits: false, ...over,
  }; // prettier-ignore
}

/** Image i's carried state after stage 0, as a request carries it (fp32). */
async function stateAfterStage0(i: number): Promise<ValidRequest['state']> {
  const stage0 = await runner.run(0, { image: { data: image(i), dims: [1, ...m.input.shape] } });
  return new Map(
    carriedOutputs(m, 0).map((spec) => {
      const values = stage0.outputs[spec.name]!.data as Float32Array;
      return [spec.name, encodeTensor(values, spec.shape.slice(1), 'fp32')] as const;
    }),
  );
}

/** Submits requests and resolves with every reply, in submission order, once each has one. */
function submitAll(b: Batcher, reqs: ValidRequest[]): Promise<JobReply[][]> {
  const replies = reqs.map(() => [] as JobReply[]);
  return new Promise((resolve) => {
    let left = reqs.length;
    reqs.forEach((req, i) => {
      const job: Job = {
        req,
        enqueuedAt: performance.now(),
        reply: (o) => {
          replies[i]!.push(o);
          if (replies[i]!.length === 1 && --left === 0) setTimeout(() => resolve(replies), 50); // late doubles show
        },
      };
      b.submit(job);
    });
  });
}

const batchSizes = (rs: JobReply[][]) => rs.map((r) => (r[0]!.kind === 'prediction' ? r[0]!.batchSize : 0));

describe('batcher - batches, bounds and deadlines', () => {
  it('requests that arrive together share one batch, up to max batch, and each gets exactly one reply', async () => {
    const b = new Batcher(runner, m, { maxBatch: 4, maxDelayMs: 50, queueLimit: 64 });
    const replies = await submitAll(
      b,
      Array.from({ length: 10 }, (_, i) => request(i, { thresholds: never })),
    );
    expect(replies.every((r) => r.length === 1 && r[0]!.kind === 'prediction')).toBe(true);
    expect(batchSizes(replies)).toEqual([4, 4, 4, 4, 4, 4, 4, 4, 2, 2]);
    for (const r of replies) expect((r[0] as { exit: number }).exit).toBe(m.exits.length - 1);
    await b.idle();
  });

  it('a lone request waits at most max delay for company', async () => {
    const b = new Batcher(runner, m, { maxBatch: 32, maxDelayMs: 20, queueLimit: 64 });
    const reply = (await submitAll(b, [request(0)]))[0]![0];
    expect(reply).toMatchObject({ kind: 'prediction', batchSize: 1 });
    expect((reply as { queueMs: number }).queueMs).toBeGreaterThanOrEqual(19);
  });

  it('a full queue answers OVERLOADED at once; an expired request gets EXPIRED without compute', async () => {
    const b = new Batcher(runner, m, { maxBatch: 8, maxDelayMs: 30, queueLimit: 2 });
    const replies = await submitAll(b, [request(0), request(1, { deadlineUnixMs: Date.now() + 5 }), request(2)]);
    expect(replies[2]![0]).toMatchObject({ kind: 'error', code: ErrorCode.OVERLOADED });
    expect(replies[1]![0]).toMatchObject({ kind: 'error', code: ErrorCode.EXPIRED });
    expect(replies[0]![0]).toMatchObject({ kind: 'prediction', batchSize: 1 });
  });

  it('requests for different first stages run in separate batches, with the same answers as alone', async () => {
    const state = await stateAfterStage0(5);
    const b = new Batcher(runner, m, { maxBatch: 8, maxDelayMs: 30, queueLimit: 64 });
    const both = await submitAll(b, [
      request(5, { thresholds: never }),
      request(5, { thresholds: never, firstStage: 1, state }),
    ]);
    expect(batchSizes(both)).toEqual([1, 1]);
    const [fromImage, fromState] = both.map((r) => r[0] as { classIndex: number; confidence: number });
    expect(fromState!.classIndex).toBe(fromImage!.classIndex);
    expect(fromState!.confidence).toBeCloseTo(fromImage!.confidence, 5);
  });

  it('with two batches in flight, the next batch starts before the first one is answered', async () => {
    const events: string[] = [];
    const observer = { batch: (size: number) => void events.push(`batch ${size}`), stage: () => undefined };
    const run = async (batchesInFlight: number) => {
      events.length = 0;
      const b = new Batcher(runner, m, { maxBatch: 4, maxDelayMs: 50, queueLimit: 64, batchesInFlight }, observer);
      const reqs = Array.from({ length: 8 }, (_, i) => request(i, { thresholds: never }));
      await new Promise<void>((resolve) => {
        let left = reqs.length;
        for (const req of reqs) {
          b.submit({
            req,
            enqueuedAt: performance.now(),
            reply: () => (events.push('reply'), --left === 0 && resolve()),
          });
        }
      });
      return events.slice(0, 2);
    };
    expect(await run(1)).toEqual(['batch 4', 'reply']);
    expect(await run(2)).toEqual(['batch 4', 'batch 4']);
  });
});

describe('batcher - one hand-off per batch', () => {
  it('answers each frame as its stages run one frame at a time would: the same exit, class and confidence', async () => {
    const point = operatingPoint(m).thresholds;
    const ids = Array.from({ length: 40 }, (_, i) => i);
    const want: { exit: number; classIndex: number; confidence: number }[] = [];
    for (const i of ids) {
      let carried: Record<string, { data: Float32Array | Uint8Array; dims: number[] }> = {};
      let answer: { exit: number; classIndex: number; confidence: number } | undefined;
      for (let s = 0; s < m.stages.length && !answer; s++) {
        const feeds = { ...carried, image: { data: image(i), dims: [1, ...m.input.shape] } };
        carried = (await runner.run(s, feeds)).outputs;
        for (const e of m.stages[s]!.exits) {
          const d = decide(carried[m.exits[e]!.output]!.data as Float32Array);
          if (!answer && exitsHere(e, d.confidence, point)) answer = { exit: e, ...d };
        }
      }
      want.push(answer!);
    }
    const b = new Batcher(runner, m, { maxBatch: 32, maxDelayMs: 30, queueLimit: 64 });
    // Every third frame asks for all exits: it runs on to the last exit among frames that leave early.
    const got = await submitAll(
      b,
      ids.map((i) => request(i, { allExits: i % 3 === 0 })),
    );
    const exits = new Set<number>();
    got.forEach((r, i) => {
      expect(r).toHaveLength(1);
      const a = r[0] as Extract<JobReply, { kind: 'prediction' }>;
      expect([a.exit, a.classIndex]).toEqual([want[i]!.exit, want[i]!.classIndex]);
      expect(a.confidence).toBeCloseTo(want[i]!.confidence, 4);
      if (i % 3 === 0) expect(a.exits!.map((v) => v.exit)).toEqual(m.exits.map((e) => e.index));
      exits.add(a.exit);
    });
    expect(exits.size).toBeGreaterThanOrEqual(3); // frames leave at several exits, batch rows drop out between stages
  });

  it('a frame that leaves at an early exit is answered while the rest of its batch computes', async () => {
    // The real stages, but the passes after the first are held back until the test lets them go: the early frame
    // must be answered from the first pass alone, while the later stages are (as far as the batcher knows) still
    // computing. Not a matter of timing, so it holds on a loaded machine too.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const gated = {
      runCascade: async (first: number, feeds: Feeds, rule: ExitRule, onPass: (p: StagePass) => void) => {
        const passes: StagePass[] = [];
        await runner.runCascade(first, feeds, rule, (p) => passes.push(p));
        onPass(passes[0]!);
        await held;
        passes.slice(1).forEach(onPass);
      },
    } as unknown as StageRunner;
    const b = new Batcher(gated, m, { maxBatch: 2, maxDelayMs: 20, queueLimit: 64 });
    const first = m.exits.map((_, i) => (i === 0 || i === m.exits.length - 1 ? 0 : 2)); // leaves at exit 0
    const events: string[] = [];
    const replies: JobReply[] = [];
    await new Promise<void>((resolve) => {
      [request(1, { thresholds: first }), request(2, { thresholds: never })].forEach((req, i) =>
        b.submit({
          req,
          enqueuedAt: performance.now(),
          reply: (o) => {
            replies[i] = o;
            events.push(i === 0 ? 'early answered' : 'late answered');
            if (i === 0) {
              events.push('later stages released');
              release();
            }
            if (replies.filter(Boolean).length === 2) resolve();
          },
        }),
      );
    });
    const [early, late] = replies as Extract<JobReply, { kind: 'prediction' }>[];
    expect([early!.exit, late!.exit, early!.batchSize]).toEqual([0, m.exits.length - 1, 2]);
    expect(events).toEqual(['early answered', 'later stages released', 'late answered']);
  });

  it('a batch that cannot be computed is answered INTERNAL, once a request, and the batcher goes on', async () => {
    const b = new Batcher(runner, m, { maxBatch: 4, maxDelayMs: 5, queueLimit: 64 });
    const bad = request(1, { firstStage: 1 }); // no state: validation would have refused it
    const [r] = await submitAll(b, [bad]);
    expect(r).toHaveLength(1);
    expect(r![0]).toMatchObject({ kind: 'error', code: ErrorCode.INTERNAL });
    const [ok] = await submitAll(b, [request(2)]);
    expect(ok![0]).toMatchObject({ kind: 'prediction' });
  });
});

describe('batcher - answers are finite', () => {
  it('a state of finite values near float32 limit that overflows in the stages is answered BAD_REQUEST, not NaN', async () => {
    const b = new Batcher(runner, m, { maxBatch: 8, maxDelayMs: 5, queueLimit: 64 });
    const huge = new Map(
      carriedOutputs(m, 0).map((spec) => {
        const n = spec.shape.slice(1).reduce((a, x) => a * x, 1);
        const values = Float32Array.from({ length: n }, (_, k) => (k % 3 === 0 ? -3e38 : 3e38));
        return [spec.name, encodeTensor(values, spec.shape.slice(1), 'fp32')] as const;
      }),
    );
    const replies = await submitAll(b, [
      request(1, { firstStage: 1, state: huge, thresholds: never }),
      request(2, { firstStage: 1, state: await stateAfterStage0(2), thresholds: never }),
    ]);
    expect(replies[0]).toEqual([
      { kind: 'error', code: ErrorCode.BAD_REQUEST, message: expect.stringMatching(/non-finite logit/) },
    ]);
    // Its batch mate is answered as usual.
    expect(replies[1]![0]).toMatchObject({ kind: 'prediction', exit: m.exits.length - 1 });
    expect(Number.isFinite((replies[1]![0] as { confidence: number }).confidence)).toBe(true);
  });
});

describe('batcher - shadow requests and all exits', () => {
  it('all_exits runs to the last exit and reports every exit, but answers at the exit the thresholds pick', async () => {
    const b = new Batcher(runner, m, { maxBatch: 8, maxDelayMs: 5, queueLimit: 64 });
    const ids = Array.from({ length: 12 }, (_, i) => i);
    const plain = await submitAll(
      b,
      ids.map((i) => request(i)),
    );
    const all = await submitAll(
      b,
      ids.map((i) => request(i, { allExits: true })),
    );
    const last = m.exits.length - 1;
    let early = 0;
    ids.forEach((i) => {
      const p = plain[i]![0] as Extract<JobReply, { kind: 'prediction' }>;
      const a = all[i]![0] as Extract<JobReply, { kind: 'prediction' }>;
      expect(all[i]).toHaveLength(1);
      expect([a.exit, a.classIndex]).toEqual([p.exit, p.classIndex]);
      expect(a.confidence).toBeCloseTo(p.confidence, 5);
      expect(p.exits).toBeUndefined();
      expect(a.exits!.map((v) => v.exit)).toEqual(m.exits.map((e) => e.index));
      expect(a.exits![a.exit]!.classIndex).toBe(a.classIndex);
      const probs = a.exits![last]!.probabilities!;
      expect(probs).toHaveLength(m.classes.length);
      expect(probs.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
      expect(Math.max(...probs)).toBeCloseTo(a.exits![last]!.confidence, 5);
      for (const v of a.exits!) expect(Math.max(...v.probabilities!)).toBeCloseTo(v.confidence, 5);
      if (a.exit < last) early++;
    });
    expect(early).toBeGreaterThan(6); // at the operating point most frames leave early: the test covers that case
  });

  it('a shadow request is refused while regular requests wait, and runs after them in small batches', async () => {
    const sizes: string[] = [];
    const observer = { batch: (size: number) => void sizes.push(String(size)), stage: () => undefined };
    const b = new Batcher(runner, m, { maxBatch: 8, maxDelayMs: 20, queueLimit: 64, shadowBatch: 2 }, observer);
    const order: string[] = [];
    const replies: Record<string, JobReply> = {};
    const submit = (name: string, req: ValidRequest) =>
      new Promise<void>((resolve) =>
        b.submit({
          req,
          enqueuedAt: performance.now(),
          reply: (o) => ((replies[name] = o), order.push(name), resolve()),
        }),
      );
    const shadow = (i: number) => request(i, { shadow: true, allExits: true });
    const idle = [submit('s0', shadow(0)), submit('s1', shadow(1)), submit('s2', shadow(2))];
    await Promise.all(idle);
    expect(sizes).toEqual(['1', '2']); // alone, a shadow runs at once; those that came meanwhile, two at a time
    sizes.length = 0;
    const busy = [submit('r0', request(3)), submit('r1', request(4)), submit('s3', shadow(5))];
    expect(replies.s3).toMatchObject({ kind: 'error', code: ErrorCode.OVERLOADED });
    expect((replies.s3 as { message: string }).message).toMatch(/2 regular requests wait/);
    await Promise.all(busy);
    await b.idle(); // answers come stage by stage: the batch may still compute after its frames are answered
    const late = submit('s4', shadow(6));
    const regular = submit('r2', request(7));
    await Promise.all([late, regular]);
    expect(order.slice(-2)).toEqual(['s4', 'r2']); // s4 was computing when r2 came; the queue then served r2
    expect(replies.s4).toMatchObject({ kind: 'prediction', batchSize: 1 });
    expect((replies.s4 as { exits: unknown[] }).exits).toHaveLength(m.exits.length);
    await b.idle();
    expect(b.shadowDepth).toBe(0);
  });
});

describe('batcher - stages joined into one graph', () => {
  it('answers as stage by stage: the same exits, classes and confidences, from the image and from a state', async () => {
    const joined = await StageRunner.create(model, { threads: 1, fused: [0, 1] });
    try {
      const state = await stateAfterStage0(7);
      // The default operating point: frames leave at different exits, some at the edge's, some in the cloud.
      const reqs = [
        ...Array.from({ length: 24 }, (_, i) => request(i)),
        request(7, { firstStage: 1, state }),
        request(8, { thresholds: never, returnProbabilities: true }),
      ];
      const options = { maxBatch: 32, maxDelayMs: 30, queueLimit: 64 };
      const want = await submitAll(new Batcher(runner, m, options), reqs);
      const got = await submitAll(new Batcher(joined, m, options), reqs);
      const exits = new Set<number>();
      got.forEach((r, i) => {
        expect(r).toHaveLength(1);
        const [a, b] = [r[0] as JobReply & { kind: 'prediction' }, want[i]![0] as JobReply & { kind: 'prediction' }];
        expect([a.kind, a.exit, a.classIndex]).toEqual([b.kind, b.exit, b.classIndex]);
        expect(a.confidence).toBeCloseTo(b.confidence, 4);
        exits.add(a.exit);
      });
      expect(exits.size).toBeGreaterThanOrEqual(3); // not a test of one exit only
      expect((got[25]![0] as { probabilities?: number[] }).probabilities).toHaveLength(m.classes.length);
    } finally {
      await joined.close();
    }
  });
});
