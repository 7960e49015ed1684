import { startWorker, type WorkerProcess } from '@cascade/demo';
import { elementCount, seededRandom, subjects, v1, type DType, type InferRequestMessage } from '@cascade/proto';
import type { ModelDir } from '@cascade/runtime';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeReply,
  encodeRequest,
  MODEL,
  model,
  natsForTests,
  sampleImage,
  validRequest,
  type TestNats,
} from './harness.js';

/** Deterministic generator (mulberry32), so every run sends the same requests. */
function rng(seed: number) {
  const next = seededRandom(seed);
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!,
  };
}

const NON_FINITE = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];

/** Raw protobuf bytes: a tag, then a varint or length-delimited payload. */
function field(no: number, wire: 0 | 2, payload: number | Uint8Array): Uint8Array {
  const varint = (x: number) => {
    const out: number[] = [];
    while (x > 127) {
      out.push((x & 0x7f) | 0x80);
      x = Math.floor(x / 128);
    }
    out.push(x);
    return out;
  };
  if (wire === 0) return new Uint8Array([...varint(no * 8), ...varint(payload as number)]);
  const p = payload as Uint8Array;
  return new Uint8Array([...varint(no * 8 + 2), ...varint(p.length), ...p]);
}

/** The kinds of malformed request, each a function of the generator and a valid request. */
function kinds(m: ModelDir) {
  const man = m.manifest;
  const base = (r: ReturnType<typeof rng>, over: Partial<InferRequestMessage> = {}) =>
    validRequest(m, {
      image: { name: 'image', dtype: v1.DType.UINT8, shape: man.input.shape, data: sampleImage(r.int(1000)) },
      ...over,
    });
  const stateSpec = () => {
    const s = man.stages[1]!.inputs.find((t) => t.name !== 'image')!;
    return { name: s.name, shape: s.shape.slice(1), n: elementCount(s.shape.slice(1)) };
  };
  return {
    random_bytes: (r: ReturnType<typeof rng>) => Uint8Array.from({ length: r.int(600) }, () => r.int(256)),
    truncated: (r: ReturnType<typeof rng>) => {
      const full = encodeRequest(base(r));
      return full.subarray(0, r.int(full.length));
    },
    bytes_flipped: (r: ReturnType<typeof rng>) => {
      const data = encodeRequest(base(r)).slice();
      for (let k = 1 + r.int(8); k > 0; k--) data[r.int(data.length)] = r.int(256);
      return data;
    },
    nan_in_fp32_state: (r: ReturnType<typeof rng>) => {
      const s = stateSpec();
      const f = new Float32Array(s.n).map(() => r.next());
      f[r.int(s.n)] = r.pick(NON_FINITE);
      return encodeRequest(
        base(r, { state: [{ name: s.name, dtype: v1.DType.FP32, shape: s.shape, data: new Uint8Array(f.buffer) }] }),
      );
    },
    nan_in_fp16_state: (r: ReturnType<typeof rng>) => {
      const s = stateSpec();
      const h = new Uint16Array(s.n).map(() => r.int(0x3c00));
      h[r.int(s.n)] = r.pick([0x7c00, 0xfc00, 0x7e00]);
      return encodeRequest(
        base(r, { state: [{ name: s.name, dtype: v1.DType.FP16, shape: s.shape, data: new Uint8Array(h.buffer) }] }),
      );
    },
    huge_finite_state: (r: ReturnType<typeof rng>) => {
      // Every number finite, but near float32's limit: the stages overflow on them, which must not come back as a
      // prediction with a NaN confidence.
      const s = stateSpec();
      if (r.next() < 0.5) {
        const f = new Float32Array(s.n).map(() => (r.next() < 0.5 ? -1 : 1) * (1e38 + r.next() * 2.4e38));
        return encodeRequest(
          base(r, { state: [{ name: s.name, dtype: v1.DType.FP32, shape: s.shape, data: new Uint8Array(f.buffer) }] }),
        );
      }
      const req = base(r);
      const t = req.state![0]!;
      return encodeRequest({ ...req, state: [{ ...t, scale: (t.scale ?? []).map(() => 1e35 + r.next() * 9e35) }] });
    },
    nan_in_int8_scale: (r: ReturnType<typeof rng>) => {
      const req = base(r);
      const t = { ...req.state![0]! };
      const scales = [...(t.scale ?? [])];
      scales[r.int(scales.length)] = r.pick(NON_FINITE);
      return encodeRequest({ ...req, state: [{ ...t, scale: scales }] });
    },
    nan_elsewhere: (r: ReturnType<typeof rng>) => {
      const thresholds = [...base(r).thresholds!];
      if (r.next() < 0.5) thresholds[r.int(thresholds.length)] = r.pick(NON_FINITE);
      return encodeRequest(base(r, { thresholds }));
    },
    huge_shape: (r: ReturnType<typeof rng>) => {
      const s = stateSpec();
      const shape = r.pick([new Array<number>(90_000).fill(2), [2 ** 40, 2], [-1, ...s.shape.slice(1)], [0], []]);
      return encodeRequest(
        base(r, { state: [{ name: s.name, dtype: v1.DType.FP32, shape, data: new Uint8Array(64) }] }),
      );
    },
    wrong_model_or_version: (r: ReturnType<typeof rng>) =>
      encodeRequest(
        base(
          r,
          r.next() < 0.5 ? { modelVersion: 'x'.repeat(1 + r.int(100_000)) } : { model: 'm'.repeat(1 + r.int(100_000)) },
        ),
      ),
    bad_stage: (r: ReturnType<typeof rng>) => encodeRequest(base(r, { firstStage: r.pick([0, 2, 3, 99, 2 ** 31]) })),
    oversized_strings: (r: ReturnType<typeof rng>) =>
      encodeRequest(
        base(
          r,
          r.next() < 0.5 ? { requestId: 'i'.repeat(129 + r.int(50_000)) } : { edgeId: 'e'.repeat(r.int(100_000)) },
        ),
      ),
    wrong_wire_types: (r: ReturnType<typeof rng>) => {
      const valid = encodeRequest(base(r));
      const bad = r.pick([
        field(6, 0, 7),
        field(5, 2, new Uint8Array([1, 2, 3])),
        field(13, 2, new Uint8Array([0xff])),
        field(7, 0, 1),
      ]);
      const out = new Uint8Array(valid.length + bad.length);
      out.set(valid);
      out.set(bad, valid.length);
      return out;
    },
    bad_deadline: (r: ReturnType<typeof rng>) =>
      encodeRequest(base(r, { deadlineUnixMs: r.pick([0, -1, -(2 ** 52), Date.now() - 1 - r.int(10_000)]) })),
    wrong_dtypes: (r: ReturnType<typeof rng>) => {
      const req = base(r);
      if (r.next() < 0.5)
        return encodeRequest({
          ...req,
          image: { ...req.image!, dtype: r.pick([v1.DType.FP32, v1.DType.INT8, 99 as DType]) },
        });
      return encodeRequest({
        ...req,
        state: [{ ...req.state![0]!, dtype: r.pick([v1.DType.UINT8, v1.DType.DTYPE_UNSPECIFIED, 42 as DType]) }],
      });
    },
  } as const;
}

let nats: TestNats;
let nc: NatsConnection;
let worker: WorkerProcess;
let m: ModelDir;

beforeAll(async () => {
  nats = await natsForTests();
  nc = await connect({ servers: nats.url });
  m = await model();
  worker = await startWorker({
    model: MODEL,
    nats: nats.url,
    id: 'wfuzz',
    extra: ['--threads', '1', '--queue-limit', '4096'],
  });
});

afterAll(async () => {
  await worker?.stop();
  await nc?.close();
  await nats?.stop();
});

describe('worker fuzz - 10,000 generated malformed requests', () => {
  it('each gets a coded error or a valid prediction, never a timeout; then valid requests are answered as before', async () => {
    const subject = subjects.infer(m.manifest.name);
    // Encoded when sent: a request carries a deadline, and the fuzz between the two rounds may take longer than it.
    const probes = () =>
      Array.from({ length: 20 }, (_, i) =>
        encodeRequest(
          validRequest(m, {
            requestId: `probe-${i}`,
            image: { name: 'image', dtype: v1.DType.UINT8, shape: m.manifest.input.shape, data: sampleImage(i) },
          }),
        ),
      );
    const answer = async (data: Uint8Array) => decodeReply((await nc.request(subject, data, { timeout: 10_000 })).data);
    const before = await Promise.all(probes().map(answer));
    for (const p of before) expect(p.prediction, JSON.stringify(p.error)).toBeTruthy();

    const table = kinds(m);
    const names = Object.keys(table) as (keyof typeof table)[];
    const r = rng(20261127);
    const tally: Record<string, Record<string, number>> = {};
    const problems: string[] = [];
    const total = 10_000;
    let next = 0;
    const classes = m.manifest.classes.length;
    const exits = m.manifest.exits.length;
    const lane = async () => {
      while (next < total) {
        const i = next++;
        const kind = names[i % names.length]!;
        const data = table[kind](r);
        let outcome: string;
        try {
          const reply = await answer(data);
          if (reply.error) {
            outcome = reply.code ?? 'UNKNOWN';
            if (!reply.error.code) problems.push(`${kind} #${i}: error without a code`);
            if ((reply.error.message ?? '').length > 400)
              problems.push(`${kind} #${i}: error message of ${reply.error.message!.length} chars`);
          } else if (reply.prediction) {
            const p = reply.prediction;
            outcome = 'prediction';
            const ok =
              Number.isFinite(p.confidence) &&
              p.confidence! >= 0 &&
              p.confidence! <= 1 &&
              p.classIndex! >= 0 &&
              p.classIndex! < classes &&
              p.exit! >= 0 &&
              p.exit! < exits;
            if (!ok) problems.push(`${kind} #${i}: invalid prediction ${JSON.stringify(p)}`);
          } else {
            outcome = 'EMPTY';
            problems.push(`${kind} #${i}: empty reply`);
          }
        } catch (err) {
          outcome = 'NO_REPLY';
          problems.push(`${kind} #${i}: ${(err as Error).message}`);
        }
        (tally[kind] ??= {})[outcome] = (tally[kind]![outcome] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: 32 }, lane));
    console.log(`fuzz outcomes by kind: ${JSON.stringify(tally)}`);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(Object.values(tally).reduce((a, t) => a + Object.values(t).reduce((x, y) => x + y, 0), 0)).toBe(total);
    // Each kind met the check it was built for, not only the decoder.
    expect(tally.nan_in_fp32_state).toEqual({ BAD_REQUEST: expect.any(Number) });
    expect(tally.nan_in_fp16_state).toEqual({ BAD_REQUEST: expect.any(Number) });
    expect(tally.nan_in_int8_scale).toEqual({ BAD_REQUEST: expect.any(Number) });
    // Huge but finite states: refused, or a valid prediction (checked above); some overflow in the stages.
    expect(Object.keys(tally.huge_finite_state!).sort()).toEqual(['BAD_REQUEST', 'prediction']);
    expect(tally.bad_deadline).toEqual({ EXPIRED: expect.any(Number) });
    expect(tally.wrong_model_or_version).toEqual({ MODEL_MISMATCH: expect.any(Number) });

    const after = await Promise.all(probes().map(answer));
    expect(after.map((p) => [p.prediction?.classIndex, p.prediction?.exit, p.prediction?.confidence])).toEqual(
      before.map((p) => [p.prediction?.classIndex, p.prediction?.exit, p.prediction?.confidence]),
    );
    expect(worker.process.exitCode).toBeNull();
  });
});
