import {
  checkTensor,
  clip,
  CodecError,
  ErrorCode,
  formatShape,
  fromWireImage,
  fromWireTensor,
  v1,
  type EncodedTensor,
  type InferRequest,
} from '@cascade/proto';
import { inflateTensor } from '@cascade/proto/compress';
import { carriedOutputs, type Manifest } from '@cascade/runtime';
import { RequestError } from './errors.js';

/** Longest request id echoed in replies; a longer one is refused. */
export const MAX_REQUEST_ID = 128;

/** A request that matches the model: ready to batch. */
export interface ValidRequest {
  requestId: string;
  /** The version of the model it is for (one the worker serves). */
  modelVersion: string;
  edgeId: string;
  firstStage: number;
  image: Uint8Array;
  /**
   * Carried state by tensor name, one sample (no batch dimension), checked but still encoded: the batcher decodes it
   * straight into the batch's input (decodeTensorInto).
   */
  state: Map<string, EncodedTensor>;
  deadlineUnixMs: number;
  returnProbabilities: boolean;
  /** One per exit. */
  thresholds: number[];
  /** The edge has answered the frame already: low priority (see Batcher). */
  shadow: boolean;
  /** Run to the last exit and return what every exit said. */
  allExits: boolean;
}

/**
 * The request id of a message without decoding the rest (field 1, written first by every encoder), or '' when
 * it cannot be read or is longer than MAX_REQUEST_ID. Cheap enough to answer a flood of requests that are shed.
 */
export function peekRequestId(data: Uint8Array): string {
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (pos >= data.length) return -1;
      const b = data[pos++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    return -1;
  };
  while (pos < data.length) {
    const tag = varint();
    if (tag < 0) return '';
    const field = Math.floor(tag / 8);
    switch (tag % 8) {
      case 0:
        if (varint() < 0) return '';
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        const len = varint();
        if (len < 0 || pos + len > data.length) return '';
        if (field === 1)
          return len <= MAX_REQUEST_ID ? Buffer.from(data.buffer, data.byteOffset + pos, len).toString('utf8') : '';
        pos += len;
        break;
      }
      default:
        return '';
    }
  }
  return '';
}

/**
 * Decodes and checks a request against the manifest of the model version it is for, among those `serves` (a worker
 * may serve several); throws RequestError with a stable code and a short message.
 */
export function validateRequest(
  data: Uint8Array,
  serves: Manifest | readonly Manifest[],
  maxBytes: number,
  now = Date.now(),
): ValidRequest {
  const served: readonly Manifest[] = Array.isArray(serves) ? serves : [serves as Manifest];
  if (data.byteLength > maxBytes) {
    throw new RequestError(ErrorCode.TOO_LARGE, `request of ${data.byteLength} bytes exceeds the limit of ${maxBytes}`);
  }
  let req: InferRequest;
  try {
    req = v1.InferRequest.decode(data);
  } catch (err) {
    throw new RequestError(
      ErrorCode.BAD_REQUEST,
      `not a cascade.v1.InferRequest: ${clip((err as Error).message, 120)}`,
      { cause: err },
    );
  }
  if (req.requestId.length > MAX_REQUEST_ID) {
    throw new RequestError(
      ErrorCode.BAD_REQUEST,
      `request_id of ${req.requestId.length} chars exceeds ${MAX_REQUEST_ID}`,
    );
  }
  const m = served.find((x) => x.name === req.model && x.version === req.modelVersion);
  if (!m) {
    throw new RequestError(
      ErrorCode.MODEL_MISMATCH,
      `request is for ${clip(req.model)}@${clip(req.modelVersion)}, this worker serves ${served.map((x) => `${x.name}@${x.version}`).join(', ')}`,
    );
  }
  const deadline = Number(req.deadlineUnixMs);
  if (!(deadline > now)) {
    throw new RequestError(
      ErrorCode.EXPIRED,
      deadline <= 0 ? `deadline_unix_ms ${deadline} is not a time` : `deadline passed ${now - deadline} ms ago`,
    );
  }
  const first = req.firstStage;
  if (first >= m.stages.length) {
    throw new RequestError(ErrorCode.BAD_REQUEST, `first_stage ${first} out of range 0..${m.stages.length - 1}`);
  }
  // Required: the cloud exits apply the edge's operating point, never one the worker picks for it.
  const thresholds = req.thresholds.map(Number);
  if (thresholds.length !== m.exits.length || thresholds.some((t) => !Number.isFinite(t))) {
    throw new RequestError(
      ErrorCode.BAD_REQUEST,
      `thresholds: need ${m.exits.length} finite values, got ${req.thresholds.length}`,
    );
  }
  try {
    // Packed tensors are unpacked against the model's shapes, so no request unpacks to more than the model takes.
    const image = fromWireImage(req.image && inflateTensor(req.image, m.input.shape), m.input.shape);
    const state = new Map<string, EncodedTensor>();
    const expected = first > 0 ? carriedOutputs(m, first - 1) : [];
    if (req.state.length !== expected.length) {
      throw new CodecError(`first_stage ${first} needs ${expected.length} state tensors, got ${req.state.length}`);
    }
    for (const spec of expected) {
      const msg = req.state.find((t) => t.name === spec.name);
      if (!msg) throw new CodecError(`state tensor "${spec.name}" missing`);
      const want = spec.shape.slice(1);
      const t = fromWireTensor(inflateTensor(msg, want));
      if (t.shape.join(',') !== want.join(',')) {
        throw new CodecError(`state tensor "${spec.name}": shape ${formatShape(t.shape)} is not ${formatShape(want)}`);
      }
      checkTensor(t);
      const bad = firstNonFinite(t);
      if (bad >= 0) {
        throw new CodecError(
          t.encoding === 'int8'
            ? `state tensor "${spec.name}": int8 scale ${bad} is not finite or over ${MAX_INT8_SCALE}`
            : `state tensor "${spec.name}": value ${bad} is not finite`,
        );
      }
      state.set(spec.name, t);
    }
    return {
      requestId: req.requestId,
      modelVersion: m.version,
      edgeId: req.edgeId,
      firstStage: first,
      image,
      state,
      deadlineUnixMs: deadline,
      returnProbabilities: req.returnProbabilities,
      thresholds,
      shadow: req.shadow,
      allExits: req.allExits || req.shadow,
    };
  } catch (err) {
    if (err instanceof CodecError)
      throw new RequestError(ErrorCode.BAD_REQUEST, clip(err.message, 200), { cause: err });
    throw err;
  }
}

/** Largest int8 scale taken: 255 steps of it stay within float32, so every decoded value is finite. */
const MAX_INT8_SCALE = 1e36;

/**
 * The index of the first value that is not finite (int8: of a scale that is not, or that would make a decoded value
 * overflow float32), or -1; reads the encoded bytes, allocating nothing.
 */
function firstNonFinite(t: EncodedTensor): number {
  switch (t.encoding) {
    case 'int8':
      return t.scales!.findIndex((s) => !(Math.abs(s) <= MAX_INT8_SCALE));
    case 'fp16':
      // Exponent bits all set: infinity or NaN. Little-endian: the high byte is second.
      for (let i = 1; i < t.data.length; i += 2) if ((t.data[i]! & 0x7c) === 0x7c) return (i - 1) / 2;
      return -1;
    case 'fp32':
      for (let i = 3; i < t.data.length; i += 4)
        if ((t.data[i]! & 0x7f) === 0x7f && t.data[i - 1]! & 0x80) return (i - 3) / 4;
      return -1;
  }
}
