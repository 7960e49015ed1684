import { ConfigError } from '@cascade/proto';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

import type { OutboxEntry, ResultQueue } from './delivery.js';

export type { OutboxEntry } from './delivery.js';

export interface OutboxOptions {
  /** Directory of the on-disk journal; without it the outbox lives in memory only. */
  dir?: string;
  /** Most results kept; the oldest beyond it are dropped. @default 100000 */
  maxCount?: number;
  /** Oldest result kept, in ms; older ones are dropped. @default 86400000 (24 h) */
  maxAgeMs?: number;
  /** Records per journal segment before a new one starts. @default 10000 */
  segmentRecords?: number;
}

export const DEFAULT_OUTBOX = { maxCount: 100_000, maxAgeMs: 24 * 3600_000, segmentRecords: 10_000 } as const;

export type DropReason = 'full' | 'expired';

interface Held extends OutboxEntry {
  seg: number;
}

/**
 * Results not yet acknowledged by the results stream, in the order they were produced, bounded by count and age.
 *
 * With a directory, every result is journalled before it is sent: segment files of one JSON line per record
 * (`{"id","s","d","t"}`) and per settlement (`{"a": id}`, written when the stream acknowledged or the limits dropped
 * it). A segment whose records are all settled is deleted. After a crash or a stop with NATS away, `open()` reads
 * back every unsettled record in order, so a restarted edge replays what never reached the stream; the stream's
 * de-duplication window absorbs a record that was acknowledged just before the crash but not yet settled here.
 */
export class Outbox implements ResultQueue {
  private queue: Held[] = [];
  private readonly index = new Map<string, Held>();
  private readonly open = new Map<number, number>(); // segment -> records not yet settled
  private seg = 0;
  private segCount = 0;
  private readonly fds = new Map<number, number>(); // open journal files by segment
  private closed = false;
  private readonly o: Required<Omit<OutboxOptions, 'dir'>> & { dir?: string };

  private constructor(
    options: OutboxOptions,
    private readonly onDrop: (reason: DropReason, n: number) => void,
  ) {
    this.o = { ...DEFAULT_OUTBOX, ...options };
  }

  /** Opens the outbox, reading back what an earlier run left unsettled in `dir`. */
  static open(options: OutboxOptions = {}, onDrop: (reason: DropReason, n: number) => void = () => undefined): Outbox {
    const box = new Outbox(options, onDrop);
    if (options.dir) box.recover(options.dir);
    return box;
  }

  get size(): number {
    return this.queue.length;
  }

  /** Adds a result at the end; drops the oldest when the count limit is passed. */
  append(entry: OutboxEntry): void {
    const held: Held = { ...entry, seg: this.seg };
    if (this.o.dir) {
      if (this.segCount >= this.o.segmentRecords) this.roll();
      held.seg = this.seg;
      this.write({ id: entry.id, s: entry.subject, d: Buffer.from(entry.data).toString('base64'), t: entry.t });
      this.segCount++;
    }
    this.open.set(held.seg, (this.open.get(held.seg) ?? 0) + 1);
    this.queue.push(held);
    this.index.set(held.id, held);
    if (this.queue.length > this.o.maxCount) this.drop('full', this.queue.length - this.o.maxCount);
  }

  /** Up to `n` oldest entries, after dropping those past the age limit. */
  head(n: number, now = Date.now()): OutboxEntry[] {
    let expired = 0;
    while (expired < this.queue.length && now - this.queue[expired]!.t > this.o.maxAgeMs) expired++;
    if (expired) this.drop('expired', expired);
    return this.queue.slice(0, n);
  }

  /** Marks entries as delivered (acknowledged by the stream). */
  settle(ids: Iterable<string>): void {
    const gone = new Set<string>();
    for (const id of ids) {
      const held = this.index.get(id);
      if (!held) continue;
      this.index.delete(id);
      gone.add(id);
      this.release(held);
    }
    if (gone.size === 0) return;
    // Acknowledgements usually settle a run at the head; otherwise filter (never spread: the queue may be 100,000 long).
    let head = 0;
    while (head < this.queue.length && gone.has(this.queue[head]!.id)) head++;
    if (head === gone.size) this.queue.splice(0, head);
    else this.queue = this.queue.filter((h) => !gone.has(h.id));
  }

  /** Closes the journal; unsettled entries stay on disk for the next `open()`. */
  close(): void {
    this.closed = true;
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    if (this.o.dir && this.queue.length === 0) rmSync(segmentPath(this.o.dir, this.seg), { force: true });
  }

  private drop(reason: DropReason, n: number): void {
    const dropped = this.queue.splice(0, n);
    for (const h of dropped) {
      this.index.delete(h.id);
      this.release(h);
    }
    this.onDrop(reason, dropped.length);
  }

  private release(h: Held): void {
    if (this.o.dir) this.write({ a: h.id }, h.seg);
    const left = (this.open.get(h.seg) ?? 1) - 1;
    if (left > 0) {
      this.open.set(h.seg, left);
      return;
    }
    this.open.delete(h.seg);
    if (this.o.dir && h.seg !== this.seg) this.remove(h.seg);
  }

  private remove(seg: number): void {
    const fd = this.fds.get(seg);
    if (fd !== undefined) closeSync(fd);
    this.fds.delete(seg);
    rmSync(segmentPath(this.o.dir!, seg), { force: true });
  }

  private write(record: object, seg = this.seg): void {
    if (this.closed) return; // an acknowledgement after close(): the stream de-duplicates the replay
    let fd = this.fds.get(seg);
    if (fd === undefined) {
      fd = openSync(segmentPath(this.o.dir!, seg), 'a');
      this.fds.set(seg, fd);
    }
    writeSync(fd, `${JSON.stringify(record)}\n`);
  }

  private roll(): void {
    if (!this.open.has(this.seg)) this.remove(this.seg);
    this.seg++;
    this.segCount = 0;
  }

  private recover(dir: string): void {
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
    } catch (err) {
      throw new ConfigError(
        `outbox directory ${dir} cannot be written (${(err as Error).message}): give it to this user, or choose another ` +
          'with --outbox-dir / CASCADE_OUTBOX_DIR ("memory" keeps results in memory only)',
        { cause: err },
      );
    }
    const segs = readdirSync(dir)
      .map((f) => /^segment-(\d+)\.jsonl$/.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    // One map over all segments: a record copied forward by an interrupted recovery appears once.
    const records = new Map<string, OutboxEntry>();
    for (const seg of segs) {
      for (const line of readFileSync(segmentPath(dir, seg), 'utf8').split('\n')) {
        if (!line) continue;
        let r: { id?: string; s?: string; d?: string; t?: number; a?: string };
        try {
          r = JSON.parse(line);
        } catch {
          continue; // a line torn by a crash mid-write
        }
        if (r.a !== undefined) records.delete(r.a);
        else if (r.id && r.s && r.d !== undefined && r.t !== undefined)
          records.set(r.id, { id: r.id, subject: r.s, data: Buffer.from(r.d, 'base64'), t: r.t });
      }
    }
    // Rewritten into a new segment, so the old ones go away at once.
    this.seg = segs.length ? segs[segs.length - 1]! + 1 : 0;
    for (const e of records.values()) this.append(e);
    for (const seg of segs) rmSync(segmentPath(dir, seg), { force: true });
  }
}

function segmentPath(dir: string, seg: number): string {
  return join(dir, `segment-${String(seg).padStart(8, '0')}.jsonl`);
}
