import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OUTBOX, ENTRY_OVERHEAD_BYTES, Outbox, type OutboxEntry } from './outbox.js';

const entry = (i: number, t = Date.now()): OutboxEntry => ({
  id: `e/r/${i}`,
  subject: 'cascade.v1.results.e',
  data: new Uint8Array([i % 256, 7]),
  t,
});
const ids = (box: Outbox) => box.head(1_000_000).map((e) => e.id);
const dir = () => mkdtempSync(join(tmpdir(), 'cascade-outbox-'));

describe('outbox - order and limits', () => {
  it('keeps entries in order until settled, in any order', () => {
    const box = Outbox.open();
    for (let i = 1; i <= 5; i++) box.append(entry(i));
    box.settle(['e/r/3', 'e/r/1']);
    expect(ids(box)).toEqual(['e/r/2', 'e/r/4', 'e/r/5']);
    box.settle(['e/r/9']); // unknown ids are ignored
    expect(box.size).toBe(3);
  });

  it('drops the oldest past the count limit and says how many', () => {
    const drops: [string, number][] = [];
    const box = Outbox.open({ maxCount: 3 }, (reason, n) => drops.push([reason, n]));
    for (let i = 1; i <= 5; i++) box.append(entry(i));
    expect(ids(box)).toEqual(['e/r/3', 'e/r/4', 'e/r/5']);
    expect(drops).toEqual([
      ['full', 1],
      ['full', 1],
    ]);
  });

  it('is sized by bytes: drops the oldest past the size limit, and says when it fills before it drops', () => {
    const drops: [string, number][] = [];
    const levels: number[] = [];
    const per = 2 + 'e/r/1'.length + 'cascade.v1.results.e'.length + ENTRY_OVERHEAD_BYTES; // entries 1-9
    const box = Outbox.open(
      { maxBytes: 20 * per },
      (reason, n) => drops.push([reason, n]),
      (level) => levels.push(level),
    );
    for (let i = 1; i <= 9; i++) box.append(entry(i));
    expect(levels).toEqual([]);
    for (let i = 10; i <= 18; i++) box.append(entry(i));
    expect(levels).toEqual([0.5, 0.8]); // at 10 and 16 of about 20
    expect(drops).toEqual([]);
    for (let i = 19; i <= 40; i++) box.append(entry(i));
    expect(levels).toEqual([0.5, 0.8, 0.95]);
    expect(box.use().bytes).toBeLessThanOrEqual(20 * per);
    expect(drops.reduce((a, [, n]) => a + n, 0)).toBe(40 - box.size);
    expect(drops.every(([reason]) => reason === 'full')).toBe(true);
    box.settle(ids(box));
    expect(levels.at(-1)).toBe(0);
    expect(box.use()).toMatchObject({ count: 0, bytes: 0 });
  });

  it('says when its oldest result nears the age limit', () => {
    const levels: number[] = [];
    const box = Outbox.open({ maxAgeMs: 1000 }, undefined, (level) => levels.push(level));
    box.append(entry(1, Date.now() - 850));
    expect(levels).toEqual([0.8]);
    expect(box.use().oldestAgeMs).toBeGreaterThanOrEqual(850);
  });

  it('the count limit is derived from the size: by default it never binds first', () => {
    const box = Outbox.open();
    const o = (box as unknown as { o: { maxCount: number; maxBytes: number } }).o;
    expect(o.maxBytes).toBe(DEFAULT_OUTBOX.maxBytes);
    expect(o.maxCount * ENTRY_OVERHEAD_BYTES).toBeLessThanOrEqual(o.maxBytes);
  });

  it('holds a long backlog (150,000) and settles it in windows, in and out of order', () => {
    const box = Outbox.open({ maxCount: 200_000 });
    for (let i = 1; i <= 150_000; i++) box.append(entry(i));
    box.settle(['e/r/5', 'e/r/149999']);
    for (let left = box.size; left > 0; left = box.size) box.settle(box.head(128).map((e) => e.id));
    expect(box.size).toBe(0);
  });

  it('drops entries past the age limit when read', () => {
    const drops: [string, number][] = [];
    const box = Outbox.open({ maxAgeMs: 1000 }, (reason, n) => drops.push([reason, n]));
    box.append(entry(1, 0));
    box.append(entry(2, 500));
    box.append(entry(3, 2000));
    expect(box.head(10, 2000).map((e) => e.id)).toEqual(['e/r/3']);
    expect(drops).toEqual([['expired', 2]]);
  });
});

describe('outbox - journal on disk', () => {
  it('a restarted outbox reads back exactly what was not settled, in order, with its bytes', () => {
    const d = dir();
    const a = Outbox.open({ dir: d, segmentRecords: 4 });
    for (let i = 1; i <= 10; i++) a.append(entry(i));
    a.settle(['e/r/1', 'e/r/2', 'e/r/5', 'e/r/9']);
    // no close(): as after a crash
    const b = Outbox.open({ dir: d, segmentRecords: 4 });
    expect(ids(b)).toEqual(['e/r/3', 'e/r/4', 'e/r/6', 'e/r/7', 'e/r/8', 'e/r/10']);
    expect(Array.from(b.head(1)[0]!.data)).toEqual([3, 7]);
    b.settle(ids(b));
    b.close();
    expect(Outbox.open({ dir: d }).size).toBe(0);
    expect(readdirSync(d)).toEqual([]);
  });

  it('deletes a segment once all its records are settled', () => {
    const d = dir();
    const box = Outbox.open({ dir: d, segmentRecords: 2 });
    for (let i = 1; i <= 5; i++) box.append(entry(i));
    expect(readdirSync(d)).toHaveLength(3);
    box.settle(['e/r/1', 'e/r/2', 'e/r/3']);
    expect(readdirSync(d)).toHaveLength(2);
  });

  it('survives a torn last line and a recovery interrupted half-way (no entry twice)', async () => {
    const d = dir();
    const a = Outbox.open({ dir: d });
    for (let i = 1; i <= 3; i++) a.append(entry(i));
    a.close();
    const { appendFileSync, copyFileSync } = await import('node:fs');
    const [seg] = readdirSync(d);
    appendFileSync(join(d, seg!), '{"id":"e/r/4","s":"cascade.v1.re');
    // A recovery that copied records forward but did not get to delete the old segment.
    copyFileSync(join(d, seg!), join(d, 'segment-00000009.jsonl'));
    const b = Outbox.open({ dir: d });
    expect(ids(b)).toEqual(['e/r/1', 'e/r/2', 'e/r/3']);
  });
});

describe('outbox - a directory it cannot use', () => {
  it('is refused at open with a ConfigError that names it and says what to do', () => {
    const d = dir();
    writeFileSync(join(d, 'file'), '');
    expect(() => Outbox.open({ dir: join(d, 'file', 'outbox') })).toThrow(
      /outbox directory .*file\/outbox cannot be written.*--outbox-dir/,
    );
  });
});
