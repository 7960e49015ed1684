import {
  encodeTensor,
  imageTensor,
  subjects,
  toWireTensor,
  v1,
  type ErrorCode,
  type InferReply,
  type TensorMessage,
} from '@cascade/proto';
import { compressTensor } from '@cascade/proto/compress';
import { carriedOutputs, type Feeds, type Manifest } from '@cascade/runtime';
import { type NatsLink } from '@cascade/service';
import { ClosedConnectionError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { randomUUID } from 'node:crypto';
import type { CompiledEdgeOptions } from './options.js';

/** Why a hard frame was answered by the edge instead of the cloud (besides a worker's error code). */
export const FALLBACK_REASONS = [
  'no_cloud', // no NATS configured
  'disconnected', // NATS configured, connection down now
  'timeout', // no reply before the deadline
  'no_responders', // no worker serves the model
  'too_large', // the request exceeds the server's max_payload
  'bad_reply', // a reply that is neither a prediction nor an error
  'nats_error', // any other client error
] as const;
/** A reason above, or the error code a worker answered with (OVERLOADED, EXPIRED, ...). */
export type FallbackReason = (typeof FALLBACK_REASONS)[number] | ErrorCode;

/** The best answer the edge has for a hard frame. */
export interface LocalAnswer {
  classIndex: number;
  confidence: number;
  exit: number;
}

/** What one exit said in the cloud (all_exits); the last exit with its probabilities. */
export interface ExitView {
  exit: number;
  classIndex: number;
  confidence: number;
  probabilities: number[];
}

export type OffloadOutcome =
  | { kind: 'answered'; answer: LocalAnswer; worker: string; bytes: number; exits?: ExitView[] }
  | { kind: 'fallback'; reason: FallbackReason; bytes: number; detail?: string };

/** Builds a frame's request, sends it to the workers and classifies what comes back. */
export class Offloader {
  constructor(
    private readonly manifest: Manifest,
    private readonly split: number,
    private readonly thresholds: number[],
    private readonly options: CompiledEdgeOptions,
    private readonly link: NatsLink | undefined,
  ) {}

  /**
   * Encodes the request: image, carried state (state mode, packed with `compression`), deadline, thresholds. `bytes`
   * is the request's size on the wire.
   */
  build(
    pixels: Uint8Array,
    carried: Feeds,
    how: { allExits?: boolean; shadow?: boolean; mode?: 'state' | 'image' } = {},
  ): { request: Uint8Array; bytes: number } {
    const m = this.manifest;
    const pack = this.options.compression === 'brotli' ? compressTensor : (t: TensorMessage) => t;
    const state: TensorMessage[] = [];
    // A shadow request carries the image alone: the frame may have left before the state the split carries.
    const mode = how.shadow ? 'image' : (how.mode ?? (this.options.mode === 'image' ? 'image' : 'state'));
    if (mode === 'state') {
      for (const spec of carriedOutputs(m, this.split - 1)) {
        const t = carried[spec.name]!;
        const enc = encodeTensor(t.data as Float32Array, t.dims.slice(1), this.options.encoding);
        state.push(pack(toWireTensor(spec.name, enc)));
      }
    }
    const request = v1.InferRequest.encode({
      requestId: randomUUID(),
      edgeId: this.options.id,
      model: m.name,
      modelVersion: m.version,
      firstStage: mode === 'state' ? this.split : 0,
      image: pack(imageTensor(pixels, m.input.shape)),
      state,
      deadlineUnixMs: Date.now() + (how.shadow ? this.options.shadowTimeoutMs : this.options.timeoutMs),
      thresholds: this.thresholds,
      shadow: how.shadow ?? false,
      allExits: how.allExits ?? how.shadow ?? false,
    }).finish();
    return { request, bytes: request.byteLength };
  }

  /** Sends a built request; never throws: every failure is a fallback with its reason. */
  async send(request: Uint8Array, bytes: number, timeoutMs = this.options.timeoutMs): Promise<OffloadOutcome> {
    const nc = this.link?.nc;
    if (!this.link) return { kind: 'fallback', reason: 'no_cloud', bytes: 0 };
    if (!nc || !this.link.connected) return { kind: 'fallback', reason: 'disconnected', bytes: 0 };
    const limit = nc.info?.max_payload ?? 1024 * 1024;
    if (request.byteLength > limit) {
      return {
        kind: 'fallback',
        reason: 'too_large',
        bytes: 0,
        detail: `${request.byteLength} bytes > max_payload ${limit}`,
      };
    }
    let data: Uint8Array;
    const m = this.manifest;
    try {
      data = (await nc.request(subjects.infer(m.name, m.version), request, { timeout: timeoutMs })).data;
    } catch (err) {
      const reason = requestFailure(err as Error);
      if (reason !== 'no_responders') return { kind: 'fallback', reason, bytes, detail: (err as Error).message };
      // No worker serves this version's subject: workers from before versioned subjects serve the model's subject
      // (and refuse another version there with MODEL_MISMATCH, which says more than no responders).
      try {
        data = (await nc.request(subjects.infer(m.name), request, { timeout: timeoutMs })).data;
      } catch (err2) {
        return { kind: 'fallback', reason: requestFailure(err2 as Error), bytes, detail: (err2 as Error).message };
      }
    }
    let reply: InferReply;
    try {
      reply = v1.InferReply.decode(data);
    } catch (err) {
      return { kind: 'fallback', reason: 'bad_reply', bytes, detail: (err as Error).message };
    }
    const p = reply.prediction;
    if (p) {
      const answer = { classIndex: p.classIndex ?? 0, confidence: p.confidence ?? 0, exit: p.exit ?? 0 };
      if (!Number.isFinite(answer.confidence))
        return { kind: 'fallback', reason: 'bad_reply', bytes, detail: 'prediction with a non-finite confidence' };
      const exits = (p.exits ?? []).map((v) => ({
        exit: v.exit ?? 0,
        classIndex: v.classIndex ?? 0,
        confidence: v.confidence ?? 0,
        probabilities: v.probabilities ?? [],
      }));
      return { kind: 'answered', answer, worker: reply.workerId ?? '', bytes, ...(exits.length ? { exits } : {}) };
    }
    if (reply.error) {
      return {
        kind: 'fallback',
        reason: (v1.ErrorCode[reply.error.code ?? 0] ?? 'INTERNAL') as ErrorCode,
        bytes,
        detail: reply.error.message ?? '',
      };
    }
    return { kind: 'fallback', reason: 'bad_reply', bytes, detail: 'reply carries neither a prediction nor an error' };
  }
}

/** The fallback reason of a failed request, from the client's error types. */
export function requestFailure(err: Error): FallbackReason {
  const chain: unknown[] = [err, (err as { cause?: unknown }).cause];
  if (chain.some((e) => e instanceof TimeoutError)) return 'timeout';
  if (chain.some((e) => e instanceof NoRespondersError) || (err instanceof RequestError && err.isNoResponders()))
    return 'no_responders';
  if (chain.some((e) => e instanceof ClosedConnectionError)) return 'disconnected';
  return 'nats_error';
}
