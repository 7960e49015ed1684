import { NoRespondersError, RequestError, TimeoutError } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { requestFailure } from './request.js';

describe('offload - failures classified by the client error types', () => {
  it('timeouts, no responders and the rest', () => {
    expect(requestFailure(new TimeoutError())).toBe('timeout');
    expect(requestFailure(new RequestError('x', { cause: new TimeoutError() }))).toBe('timeout');
    expect(
      requestFailure(new RequestError('no responders', { cause: new NoRespondersError('cascade.v1.infer.m') })),
    ).toBe('no_responders');
    expect(requestFailure(new Error('something else'))).toBe('nats_error');
  });
});
