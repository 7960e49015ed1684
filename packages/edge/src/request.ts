// A frame's inference request and what its reply means, with no Node or NATS client in the way: the Node edge and
// a browser page build and read requests with this one implementation.
import {
  encodeTensor,
  imageTensor,
  toWireTensor,
  v1,
  type Encoding,
  type ErrorCode,
  type InferReply,
  type TensorMessage,
} from '@cascade/proto';
import { carriedOutputs, type Manifest } from '@cascade/runtime/core';
import { ClosedConnectionError, NoRespondersError, RequestError, TimeoutError } from '@nats-io/nats-core';

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

/** A tensor the edge stages produced (float32 state), batch dimension first. */
export interface StateTensor {
  data: Float32Array | Uint8Array;
  dims: number[];
}

/** What a request says besides the frame: the edge's identity and its offload settings. */
export interface RequestSettings {
  edgeId: string;
  /** How carried state is encoded: fp32, fp16 or int8. */
  encoding: Encoding;
  /** int8: levels per channel, 2^stateBits (fewer bits pack smaller). @default 8 */
  stateBits?: number;
  /** The default mode: state (the split's carried state) or image (the cloud runs every stage). */
  mode: 'state' | 'image' | 'auto';
  timeoutMs: number;
  shadowTimeoutMs: number;
  /** Packs each tensor (Brotli in Node); none in a browser. @default no packing */
  pack?: (t: TensorMessage) => TensorMessage;
}

/** A frame's tensors as they go on the wire: the image, and the carried state when the request may use it. */
export interface RequestParts {
  image: TensorMessage;
  state: TensorMessage[];
}

/** What a request asks for besides the frame. */
export interface RequestHow {
  allExits?: boolean;
  shadow?: boolean;
  mode?: 'state' | 'image';
}

/** The mode a request goes in: a shadow carries the image alone (the frame may have left before the split). */
export function requestMode(o: RequestSettings, how: RequestHow = {}): 'state' | 'image' {
  return how.shadow ? 'image' : (how.mode ?? (o.mode === 'image' ? 'image' : 'state'));
}

/**
 * Encodes (and packs) a frame's tensors once: the image, and with `withState` the state the split carries. Requests
 * in either mode are then assembled from the same parts.
 */
export function encodeParts(
  m: Manifest,
  split: number,
  o: RequestSettings,
  pixels: Uint8Array,
  carried: Record<string, StateTensor>,
  withState: boolean,
): RequestParts {
  const pack = o.pack ?? ((t: TensorMessage) => t);
  const state: TensorMessage[] = [];
  if (withState) {
    for (const spec of carriedOutputs(m, split - 1)) {
      const t = carried[spec.name]!;
      const enc = encodeTensor(t.data as Float32Array, t.dims.slice(1), o.encoding, o.stateBits);
      state.push(pack(toWireTensor(spec.name, enc)));
    }
  }
  return { image: pack(imageTensor(pixels, m.input.shape)), state };
}

/**
 * A frame's request from its encoded parts: image, carried state (state mode), deadline, the edge's thresholds
 * (the cloud exits apply them), and whether it is a shadow or asks for every exit.
 */
export function assembleRequest(
  m: Manifest,
  split: number,
  thresholds: readonly number[],
  o: RequestSettings,
  parts: RequestParts,
  how: RequestHow = {},
): Uint8Array {
  const mode = requestMode(o, how);
  return v1.InferRequest.encode({
    requestId: globalThis.crypto.randomUUID(),
    edgeId: o.edgeId,
    model: m.name,
    modelVersion: m.version,
    firstStage: mode === 'state' ? split : 0,
    image: parts.image,
    state: mode === 'state' ? parts.state : [],
    deadlineUnixMs: Date.now() + (how.shadow ? o.shadowTimeoutMs : o.timeoutMs),
    thresholds: [...thresholds],
    shadow: how.shadow ?? false,
    allExits: how.allExits ?? how.shadow ?? false,
  }).finish();
}

/** Encodes a frame's request in one step (encodeParts, then assembleRequest). */
export function buildInferRequest(
  m: Manifest,
  split: number,
  thresholds: readonly number[],
  o: RequestSettings,
  pixels: Uint8Array,
  carried: Record<string, StateTensor>,
  how: RequestHow = {},
): Uint8Array {
  const parts = encodeParts(m, split, o, pixels, carried, requestMode(o, how) === 'state');
  return assembleRequest(m, split, thresholds, o, parts, how);
}

/** What a worker's reply means for the frame: its answer, or a fallback with the reason. `bytes`: the request's. */
export function readReply(data: Uint8Array, bytes: number): OffloadOutcome {
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

/** The fallback reason of a failed request, from the client's error types. */
export function requestFailure(err: Error): FallbackReason {
  const chain: unknown[] = [err, (err as { cause?: unknown }).cause];
  if (chain.some((e) => e instanceof TimeoutError)) return 'timeout';
  if (chain.some((e) => e instanceof NoRespondersError) || (err instanceof RequestError && err.isNoResponders()))
    return 'no_responders';
  if (chain.some((e) => e instanceof ClosedConnectionError)) return 'disconnected';
  return 'nats_error';
}
