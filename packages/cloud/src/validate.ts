import { CodecError, decodeTensor, elementCount, ErrorCode, fromWireImage, fromWireTensor, v1, type InferRequest } from '@cascade/proto';
import { carriedOutputs, type Manifest } from '@cascade/runtime';
import { RequestError } from './errors.js';

/** A request that matches the model: ready to batch. */
export interface ValidRequest {
  requestId: string;
  edgeId: string;
  firstStage: number;
  image: Uint8Array;
  /** Carried state by tensor name, float32, one sample (no batch dimension). */
  state: Map<string, Float32Array>;
  deadlineUnixMs: number;
  returnProbabilities: boolean;
  /** One per exit. */
  thresholds: number[];
}

/** The request id of a message, when it can be read at all (for error replies). */
export function peekRequestId(data: Uint8Array): string {
  try {
    return v1.InferRequest.decode(data).requestId;
  } catch {
    return '';
  }
}

/** Decodes and checks a request against the manifest; throws RequestError with a stable code. */
export function validateRequest(
  data: Uint8Array,
  m: Manifest,
  maxBytes: number,
  defaultThresholds: readonly number[],
): ValidRequest {
  if (data.byteLength > maxBytes) {
    throw new RequestError(ErrorCode.TOO_LARGE, `request of ${data.byteLength} bytes exceeds the limit of ${maxBytes}`);
  }
  let req: InferRequest;
  try {
    req = v1.InferRequest.decode(data);
  } catch (err) {
    throw new RequestError(ErrorCode.BAD_REQUEST, `not a cascade.v1.InferRequest: ${(err as Error).message}`, { cause: err });
  }
  if (req.model !== m.name || req.modelVersion !== m.version) {
    throw new RequestError(
      ErrorCode.MODEL_MISMATCH,
      `request is for ${req.model}@${req.modelVersion}, this worker serves ${m.name}@${m.version}`,
    );
  }
  const first = req.firstStage;
  if (first >= m.stages.length) {
    throw new RequestError(ErrorCode.BAD_REQUEST, `first_stage ${first} out of range 0..${m.stages.length - 1}`);
  }
  const thresholds = req.thresholds.length > 0 ? req.thresholds.map(Number) : [...defaultThresholds];
  if (thresholds.length !== m.exits.length || thresholds.some((t) => !Number.isFinite(t))) {
    throw new RequestError(ErrorCode.BAD_REQUEST, `thresholds: need ${m.exits.length} finite values, got ${req.thresholds.length}`);
  }
  try {
    const image = fromWireImage(req.image, m.input.shape);
    const state = new Map<string, Float32Array>();
    const expected = first > 0 ? carriedOutputs(m, first - 1) : [];
    if (req.state.length !== expected.length) {
      throw new CodecError(`first_stage ${first} needs ${expected.length} state tensors, got ${req.state.length}`);
    }
    for (const spec of expected) {
      const msg = req.state.find((t) => t.name === spec.name);
      if (!msg) throw new CodecError(`state tensor "${spec.name}" missing`);
      const t = fromWireTensor(msg);
      const want = spec.shape.slice(1);
      if (t.shape.join(',') !== want.join(',')) {
        throw new CodecError(`state tensor "${spec.name}": shape [${t.shape.join(', ')}] is not [${want.join(', ')}]`);
      }
      const values = decodeTensor(t);
      if (values.length !== elementCount(want)) throw new CodecError(`state tensor "${spec.name}": wrong size`);
      state.set(spec.name, values);
    }
    return {
      requestId: req.requestId,
      edgeId: req.edgeId,
      firstStage: first,
      image,
      state,
      deadlineUnixMs: Number(req.deadlineUnixMs),
      returnProbabilities: req.returnProbabilities,
      thresholds,
    };
  } catch (err) {
    if (err instanceof CodecError) throw new RequestError(ErrorCode.BAD_REQUEST, err.message, { cause: err });
    throw err;
  }
}
