import { subjects } from '@cascade/proto';
import { compressTensor } from '@cascade/proto/compress';
import { type Feeds, type Manifest } from '@cascade/runtime';
import { type NatsLink } from '@cascade/service';
import type { CompiledEdgeOptions } from './options.js';
import { buildInferRequest, readReply, requestFailure, type OffloadOutcome } from './request.js';

export {
  FALLBACK_REASONS,
  requestFailure,
  type ExitView,
  type FallbackReason,
  type LocalAnswer,
  type OffloadOutcome,
} from './request.js';

/** Builds a frame's request, sends it to the workers and classifies what comes back. */
export class Offloader {
  constructor(
    private readonly manifest: Manifest,
    private readonly split: number,
    private readonly thresholds: number[],
    private readonly options: CompiledEdgeOptions,
    private readonly link: NatsLink | undefined,
  ) {}

  /** Encodes the request (buildInferRequest); `bytes` is its size on the wire. */
  build(
    pixels: Uint8Array,
    carried: Feeds,
    how: { allExits?: boolean; shadow?: boolean; mode?: 'state' | 'image' } = {},
  ): { request: Uint8Array; bytes: number } {
    const o = this.options;
    const request = buildInferRequest(this.manifest, this.split, this.thresholds, {
      edgeId: o.id,
      encoding: o.encoding,
      stateBits: o.stateBits,
      mode: o.mode,
      timeoutMs: o.timeoutMs,
      shadowTimeoutMs: o.shadowTimeoutMs,
      ...(o.compression === 'brotli' ? { pack: compressTensor } : {}),
    }, pixels, carried, how); // prettier-ignore
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
    return readReply(data, bytes);
  }
}
