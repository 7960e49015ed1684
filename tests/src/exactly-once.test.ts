// Exactly once across outages longer than the results stream's de-duplication window, with a real nats-server: an
// edge killed after the stream stored some of its results but before it settled them replays its journal after the
// window has passed; the stream must still hold each result once. And the stream's limits are settings that reach an
// existing stream.
import { startNatsServer, type LocalNats } from '@cascade/demo';
import { Outbox, ResultsPublisher } from '@cascade/edge';
import { RESULTS_STREAM } from '@cascade/proto';
import { ensureResultsStream, NatsLink, resultsStreamUse } from '@cascade/service';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let server: LocalNats;
let nc: NatsConnection;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
});

afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

/** Every message id the stream holds on a subject, in order. */
async function storedIds(subject: string): Promise<string[]> {
  const js = jetstream(nc);
  const consumer = await js.consumers.get(RESULTS_STREAM.name, { filter_subjects: subject });
  const ids: string[] = [];
  let pending = (await consumer.info()).num_pending;
  while (pending > 0) {
    for await (const m of await consumer.fetch({ max_messages: 100, expires: 1000 })) {
      ids.push(m.headers?.get('Nats-Msg-Id') ?? '');
      pending = m.info.pending;
    }
  }
  return ids;
}

describe('exactly once - a journal replayed after the de-duplication window', () => {
  it('results the stream stored before the edge died are not stored again, though the window that would catch them has passed', async () => {
    await ensureResultsStream(nc, { limits: { duplicateWindowMs: 1000 } });
    const subject = 'cascade.v1.results.eo-1';
    const entries = Array.from({ length: 10 }, (_, i) => ({
      id: `eo-1/run-a/${i}`,
      subject,
      data: new Uint8Array([i, 1, 2, 3]),
      t: Date.now(),
    }));
    // The edge journalled ten results and sent them; the stream stored the first six; the edge was killed before
    // the acknowledgements were settled in its journal.
    const dir = mkdtempSync(join(tmpdir(), 'cascade-eo-outbox-'));
    const before = Outbox.open({ dir });
    for (const e of entries) before.append(e);
    before.close();
    const js = jetstream(nc);
    for (const e of entries.slice(0, 6)) await js.publish(e.subject, e.data, { msgID: e.id });
    await new Promise((r) => setTimeout(r, 1500)); // the edge stays down past the stream's 1 s window

    const logs: [string, Record<string, unknown>][] = [];
    const log = (event: string, fields: Record<string, unknown> = {}) => void logs.push([event, fields]);
    const link = await NatsLink.open({ servers: server.url, via: 'test', name: 'eo', log, firstConnect: 'now' });
    const outbox = Outbox.open({ dir });
    expect(outbox.size).toBe(10);
    const publisher = new ResultsPublisher(outbox, link, log);
    expect(await publisher.flush(10_000)).toBe(true);
    publisher.close();
    await link.close();

    expect(await storedIds(subject)).toEqual(entries.map((e) => e.id));
    expect(logs).toContainEqual(['results_already_stored', { count: 6, pending: 4 }]);
  });
});

describe('results stream - limits are settings that reach an existing stream', () => {
  it('updates size, age and window of an existing stream, never its copies, and reports its use', async () => {
    const before = await ensureResultsStream(nc);
    expect(before.created).toBe(false);
    const after = await ensureResultsStream(nc, {
      limits: { maxBytes: 64 * 1024 ** 2, maxAgeMs: 3_600_000, duplicateWindowMs: 120_000 },
      replicas: 3, // a single server: asked for, not applied
    });
    expect(after.updated).toEqual([
      `maxBytes: ${before.limits.maxBytes} -> ${64 * 1024 ** 2}`,
      `maxAgeMs: ${before.limits.maxAgeMs} -> 3600000`,
      `duplicateWindowMs: ${before.limits.duplicateWindowMs} -> 120000`,
    ]);
    const info = await (await jetstreamManager(nc)).streams.info(RESULTS_STREAM.name);
    expect(info.config).toMatchObject({ max_bytes: 64 * 1024 ** 2, max_age: 3_600_000 * 1e6, num_replicas: 1 });
    expect(info.config.allow_direct).toBe(true);
    expect((await ensureResultsStream(nc, { limits: { maxBytes: 64 * 1024 ** 2 } })).updated).toEqual([]);
    const use = await resultsStreamUse(nc);
    expect(use).toMatchObject({ maxBytes: 64 * 1024 ** 2, maxAgeMs: 3_600_000, messages: 10 });
    expect(use!.bytes).toBeGreaterThan(0);
    expect(use!.oldestAgeMs).toBeGreaterThan(1000);
  });
});
