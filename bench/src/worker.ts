import { startWorker, type WorkerProcess } from '@cascade/demo';
import {
  elementCount,
  encodeTensor,
  imageTensor,
  subjects,
  toWireTensor,
  v1,
  type InferRequestMessage,
} from '@cascade/proto';
import { carriedOutputs, type ModelDir } from '@cascade/runtime';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { lastExitOnly } from './cascade.js';
import { stageInputs } from './raw.js';
import { percentile, processCpuSeconds, sleep, spread, type Spread } from './stats.js';

/** Requests for stage 1 on, built from real images and their real carried state; thresholds send all to the last exit. */
export async function realRequests(
  model: ModelDir,
  images: Uint8Array,
  n: number,
  encoding: 'int8' | 'fp32' = 'int8',
): Promise<Uint8Array[]> {
  const m = model.manifest;
  const feeds = (await stageInputs(model, images, n))[1]!;
  const specs = carriedOutputs(m, 0);
  const never = lastExitOnly(m.exits.length);
  const pixels = 3 * 32 * 32;
  return Array.from({ length: n }, (_, i) => {
    const state = specs.map((spec) => {
      const t = feeds[spec.name]!;
      const per = elementCount(t.dims.slice(1));
      return toWireTensor(
        spec.name,
        encodeTensor((t.data as Float32Array).slice(i * per, (i + 1) * per), t.dims.slice(1), encoding),
      );
    });
    const req: InferRequestMessage = {
      requestId: `b${i}`,
      edgeId: 'bench',
      model: m.name,
      modelVersion: m.version,
      firstStage: 1,
      image: imageTensor(images.slice(i * pixels, (i + 1) * pixels), m.input.shape),
      state,
      deadlineUnixMs: Date.now() + 24 * 3600_000,
      thresholds: never, // a deadline is required; these are reused for hours at most
    };
    return v1.InferRequest.encode(req).finish();
  });
}

export interface Capacity {
  max_batch: number;
  threads: number;
  requests_per_second: Spread;
  mean_batch: number;
  /** CPU time of the worker process per answered request, over the measured runs. */
  cpu_seconds_per_request: number;
  /** Wall time of onnxruntime's run() in the worker's inference thread per answered request (each batch's share). */
  compute_ms_per_request?: number;
}

export interface OpenLoop {
  load: number;
  offered_per_second: number;
  completed: number;
  latency_ms: { p50: number; p99: number };
}

/** Requests kept in flight by `concurrency` lanes for `ms`: answered requests per second and their mean batch. */
export async function closedLoop(
  nc: NatsConnection,
  subject: string,
  reqs: Uint8Array[],
  concurrency: number,
  ms: number,
) {
  let sent = 0;
  let done = 0;
  let batchSum = 0;
  let computeMs = 0; // each batch's compute time once: every frame of a batch carries it, so add its share
  const start = performance.now();
  const lane = async () => {
    while (performance.now() - start < ms) {
      const reply = v1.InferReply.decode(
        (await nc.request(subject, reqs[sent++ % reqs.length]!, { timeout: 10_000 })).data,
      );
      if (reply.prediction) {
        done++;
        const t = reply.prediction.timings;
        batchSum += t?.batchSize ?? 1;
        computeMs += (t?.computeMs ?? 0) / (t?.batchSize || 1);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const elapsed = performance.now() - start;
  // computeBusy: the share of the wall time the worker spent in onnxruntime's run() (a value near 1: inference binds).
  return {
    done,
    rps: (done * 1000) / elapsed,
    meanBatch: done ? batchSum / done : 0,
    computeMs,
    computeBusy: computeMs / elapsed,
  };
}

/** Worker throughput, closed loop, with dynamic batching and with batch 1. */
export async function workerCapacity(
  model: ModelDir,
  nats: string,
  reqs: Uint8Array[],
  o: { threads: number; runs: number; ms: number; concurrency: number },
  log: (m: string) => void,
): Promise<Capacity[]> {
  const nc = await connect({ servers: nats });
  const subject = subjects.infer(model.manifest.name);
  const out: Capacity[] = [];
  try {
    for (const maxBatch of [32, 1]) {
      const w = await startWorker({
        model: model.path,
        nats,
        id: `cap-${maxBatch}`,
        extra: ['--threads', String(o.threads), '--max-batch', String(maxBatch), '--metrics-port', '-1'],
      });
      try {
        await closedLoop(nc, subject, reqs, o.concurrency, 300); // warm-up
        const rps: number[] = [];
        let meanBatch = 0;
        let answered = 0;
        let computeMs = 0;
        const cpu0 = await processCpuSeconds(w.process.pid!);
        for (let r = 0; r < o.runs; r++) {
          const res = await closedLoop(nc, subject, reqs, o.concurrency, o.ms);
          rps.push(res.rps);
          meanBatch = res.meanBatch;
          answered += res.done;
          computeMs += res.computeMs;
        }
        const cpu = (await processCpuSeconds(w.process.pid!)) - cpu0;
        out.push({
          max_batch: maxBatch,
          threads: o.threads,
          requests_per_second: spread(rps),
          mean_batch: meanBatch,
          cpu_seconds_per_request: answered ? cpu / answered : 0,
          compute_ms_per_request: answered ? computeMs / answered : 0,
        });
        log(
          `worker max-batch ${maxBatch}: ${spread(rps).median.toFixed(0)} requests/s (mean batch ${meanBatch.toFixed(1)})`,
        );
      } finally {
        await w.stop();
      }
    }
  } finally {
    await nc.close();
  }
  return out;
}

/** Latency under Poisson arrivals at fractions of the measured capacity (open loop: arrivals do not wait for replies). */
export async function openLoop(
  model: ModelDir,
  nats: string,
  reqs: Uint8Array[],
  capacity: number,
  o: { threads: number; loads: number[]; ms: number; workerArgs?: string[] },
  log: (m: string) => void,
): Promise<OpenLoop[]> {
  const nc = await connect({ servers: nats });
  const subject = subjects.infer(model.manifest.name);
  const w: WorkerProcess = await startWorker({
    model: model.path,
    nats,
    id: 'open',
    extra: ['--threads', String(o.threads), '--metrics-port', '-1', '--queue-limit', '100000', ...(o.workerArgs ?? [])],
  });
  const out: OpenLoop[] = [];
  try {
    for (const load of o.loads) {
      const rate = capacity * load;
      const lat: number[] = [];
      const pending: Promise<void>[] = [];
      const start = performance.now();
      let next = start;
      let i = 0;
      while (next - start < o.ms) {
        const wait = next - performance.now();
        // Yield to the event loop on every arrival: without it, at thousands per second the loop sends for tens of
        // milliseconds before reading a reply, and the client's own stall is counted as the worker's latency.
        if (wait > 1) await sleep(wait);
        else await new Promise((r) => setImmediate(r));
        const t0 = performance.now();
        pending.push(
          nc.request(subject, reqs[i++ % reqs.length]!, { timeout: 30_000 }).then(
            () => void lat.push(performance.now() - t0),
            () => undefined,
          ),
        );
        next += (-Math.log(1 - Math.random()) * 1000) / rate;
      }
      await Promise.all(pending);
      out.push({
        load,
        offered_per_second: rate,
        completed: lat.length,
        latency_ms: { p50: percentile(lat, 0.5), p99: percentile(lat, 0.99) },
      });
      log(
        `open loop ${Math.round(load * 100)} %: p50 ${percentile(lat, 0.5).toFixed(1)} ms, p99 ${percentile(lat, 0.99).toFixed(1)} ms`,
      );
    }
  } finally {
    await w.stop();
    await nc.close();
  }
  return out;
}

export interface Transport {
  payload_bytes: number;
  requests: number;
  bare_nats_ms: { p50: number; p99: number };
  worker_ms: { p50: number; p99: number };
  worker_compute_ms_p50: number;
  worker_queue_ms_p50: number;
  added_ms_p50: number;
}

/** One request at a time: a bare NATS request-reply of the same size against the worker's, minus its compute. */
export async function transport(
  model: ModelDir,
  nats: string,
  reqs: Uint8Array[],
  o: { requests: number; threads: number },
  log: (m: string) => void,
): Promise<Transport> {
  const nc = await connect({ servers: nats });
  const echo = await connect({ servers: nats });
  echo.subscribe('bench.echo', { callback: (_e, msg) => void msg.respond(new Uint8Array(64)) });
  await echo.flush();
  const w = await startWorker({
    model: model.path,
    nats,
    id: 'transport',
    extra: ['--threads', String(o.threads), '--max-delay-ms', '0', '--metrics-port', '-1'],
  });
  const subject = subjects.infer(model.manifest.name);
  try {
    const bare: number[] = [];
    const worker: number[] = [];
    const compute: number[] = [];
    const queue: number[] = [];
    for (let i = 0; i < o.requests + 20; i++) {
      const req = reqs[i % reqs.length]!;
      let t0 = performance.now();
      await nc.request('bench.echo', req, { timeout: 5000 });
      if (i >= 20) bare.push(performance.now() - t0);
      t0 = performance.now();
      const reply = v1.InferReply.decode((await nc.request(subject, req, { timeout: 5000 })).data);
      if (i >= 20) {
        worker.push(performance.now() - t0);
        compute.push(reply.prediction?.timings?.computeMs ?? 0);
        queue.push(reply.prediction?.timings?.queueMs ?? 0);
      }
    }
    const p = (xs: number[]) => ({ p50: percentile(xs, 0.5), p99: percentile(xs, 0.99) });
    const res: Transport = {
      payload_bytes: reqs[0]!.byteLength,
      requests: o.requests,
      bare_nats_ms: p(bare),
      worker_ms: p(worker),
      worker_compute_ms_p50: percentile(compute, 0.5),
      worker_queue_ms_p50: percentile(queue, 0.5),
      added_ms_p50: percentile(worker, 0.5) - percentile(compute, 0.5) - percentile(bare, 0.5),
    };
    log(
      `transport: bare ${res.bare_nats_ms.p50.toFixed(2)} ms, worker ${res.worker_ms.p50.toFixed(2)} ms (compute ${res.worker_compute_ms_p50.toFixed(2)} ms)`,
    );
    return res;
  } finally {
    await w.stop();
    await echo.close();
    await nc.close();
  }
}
