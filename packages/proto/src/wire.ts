import $protobuf from 'protobufjs/minimal.js';
import { cascade } from './gen/cascade.js';
import { clip, CodecError, elementCount, formatShape, type EncodedTensor, type Encoding } from './codec.js';

// int64 fields (shapes, deadlines in ms) stay far below 2^53: decode them as plain numbers, not Long objects.
$protobuf.util.Long = undefined as unknown as typeof $protobuf.util.Long;
$protobuf.configure();

export const v1 = cascade.v1;
export type TensorMessage = cascade.v1.Tensor.$Properties;
export type InferRequestMessage = cascade.v1.InferRequest.$Properties;
export type InferReplyMessage = cascade.v1.InferReply.$Properties;
export type FrameResultMessage = cascade.v1.FrameResult.$Properties;
/** A decoded request (every field present, defaults filled). */
export type InferRequest = cascade.v1.InferRequest;
export type DType = cascade.v1.DType;
export type InferReply = cascade.v1.InferReply;

/** Stable error codes a worker answers with (the `ErrorCode` enum of cascade.v1, by name). */
export const ErrorCode = {
  BAD_REQUEST: 'BAD_REQUEST',
  MODEL_MISMATCH: 'MODEL_MISMATCH',
  OVERLOADED: 'OVERLOADED',
  EXPIRED: 'EXPIRED',
  INTERNAL: 'INTERNAL',
  TOO_LARGE: 'TOO_LARGE',
  DRAINING: 'DRAINING',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** NATS subjects of cascade.v1. */
export const subjects = {
  /**
   * Inference for a model: `cascade.v1.infer.<model>.<version>` with a version (what edges send to: only workers
   * serving that version answer), `cascade.v1.infer.<model>` without (the subject before versions; workers keep
   * serving it, and refuse another version there with MODEL_MISMATCH).
   */
  infer: (model: string, version?: string): string =>
    version ? `cascade.v1.infer.${model}.${version}` : `cascade.v1.infer.${model}`,
  results: (edgeId: string): string => `cascade.v1.results.${edgeId}`,
  allResults: 'cascade.v1.results.>',
};

/**
 * The JetStream stream that keeps every FrameResult (file storage, limits retention). Publishers set
 * `Nats-Msg-Id: <edge_id>/<run_id>/<sequence>`, so a result sent twice within the de-duplication window is stored
 * once.
 */
export const RESULTS_STREAM = {
  name: 'CASCADE_RESULTS',
  subjects: ['cascade.v1.results.>'],
  /** Results older than this are deleted. */
  maxAgeMs: 7 * 24 * 3600_000,
  /** The stream's size cap; past it the oldest results go. */
  maxBytes: 1024 ** 3,
  /** How long a message id is remembered for de-duplication: covers an edge's replay after a restart. */
  duplicateWindowMs: 10 * 60_000,
} as const;

/** The de-duplication id of one frame's result. */
export function resultMessageId(edgeId: string, runId: string, sequence: number): string {
  return `${edgeId}/${runId}/${sequence}`;
}

const DTYPE_OF: Record<Encoding, cascade.v1.DType> = {
  fp32: cascade.v1.DType.FP32,
  fp16: cascade.v1.DType.FP16,
  int8: cascade.v1.DType.INT8,
};

/** The wire message of an encoded float tensor. */
export function toWireTensor(name: string, t: EncodedTensor): TensorMessage {
  const msg: TensorMessage = { name, dtype: DTYPE_OF[t.encoding], shape: t.shape, data: t.data };
  if (t.scales && t.zeroPoints) {
    msg.scale = Array.from(t.scales);
    msg.zeroPoint = new Uint8Array(t.zeroPoints.buffer, t.zeroPoints.byteOffset, t.zeroPoints.byteLength);
  }
  return msg;
}

/** The wire message of a uint8 image (one sample, [C, H, W]). */
export function imageTensor(pixels: Uint8Array, shape: readonly number[]): TensorMessage {
  return { name: 'image', dtype: cascade.v1.DType.UINT8, shape: [...shape], data: pixels };
}

/** An encoded float tensor from its wire message; throws CodecError naming the tensor and what is wrong. */
export function fromWireTensor(msg: TensorMessage): EncodedTensor {
  const name = clip(msg.name || '(unnamed)');
  const shape = (msg.shape ?? []).map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new CodecError(`tensor ${name}: shape ${formatShape(shape)} must be positive integers`);
  }
  const data = msg.data ?? new Uint8Array(0);
  switch (msg.dtype) {
    case cascade.v1.DType.FP32:
      return { encoding: 'fp32', shape, data };
    case cascade.v1.DType.FP16:
      return { encoding: 'fp16', shape, data };
    case cascade.v1.DType.INT8: {
      const zp = msg.zeroPoint ?? new Uint8Array(0);
      return {
        encoding: 'int8',
        shape,
        data,
        scales: Float32Array.from(msg.scale ?? []),
        zeroPoints: new Int8Array(zp.buffer, zp.byteOffset, zp.byteLength),
      };
    }
    default:
      throw new CodecError(`tensor ${name}: dtype ${String(msg.dtype)} is not FP32, FP16 or INT8`);
  }
}

/** The pixels of an image tensor, checked against the expected [C, H, W]. */
export function fromWireImage(msg: TensorMessage | null | undefined, expected: readonly number[]): Uint8Array {
  if (!msg) throw new CodecError('request has no image tensor');
  const shape = (msg.shape ?? []).map(Number);
  if (msg.dtype !== cascade.v1.DType.UINT8)
    throw new CodecError(`image: dtype must be UINT8, got ${String(msg.dtype)}`);
  if (shape.join(',') !== expected.join(',')) {
    throw new CodecError(`image: shape ${formatShape(shape)} does not match the model's ${formatShape(expected)}`);
  }
  const data = msg.data ?? new Uint8Array(0);
  if (data.byteLength !== elementCount(expected)) {
    throw new CodecError(`image: ${data.byteLength} bytes, expected ${elementCount(expected)}`);
  }
  return data;
}
