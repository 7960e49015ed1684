// How a frame reaches the cloud: a built request sent to the model's workers over NATS, and what came back as an
// offload outcome. No Node in the way: the Node agent sends over its TCP connection, a browser page over NATS's
// WebSocket listener, with this one implementation.
import { subjects } from '@cascade/proto';
import type { Manifest } from '@cascade/runtime/core';
import type { NatsConnection } from '@nats-io/nats-core';
import { readReply, requestFailure, type OffloadOutcome } from './request.js';

/** Where offloads go. send() never throws: every failure is a fallback with its reason. */
export interface Transport {
  send(request: Uint8Array, timeoutMs: number): Promise<OffloadOutcome>;
}

/** NATS request-reply to the workers of the model's version. */
export class NatsTransport implements Transport {
  /** `connection` gives the connection when it is up now, undefined while it is down. */
  constructor(
    private readonly manifest: Pick<Manifest, 'name' | 'version'>,
    private readonly connection: () => NatsConnection | undefined,
  ) {}

  async send(request: Uint8Array, timeoutMs: number): Promise<OffloadOutcome> {
    const nc = this.connection();
    if (!nc) return { kind: 'fallback', reason: 'disconnected', bytes: 0 };
    const limit = nc.info?.max_payload ?? 1024 * 1024;
    const bytes = request.byteLength;
    if (bytes > limit) {
      return { kind: 'fallback', reason: 'too_large', bytes: 0, detail: `${bytes} bytes > max_payload ${limit}` };
    }
    const m = this.manifest;
    let data: Uint8Array;
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
