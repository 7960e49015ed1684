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
  /**
   * Most memory the results kept may take, in bytes (each result counts its bytes, id and subject plus
   * ENTRY_OVERHEAD_BYTES); past it the oldest are dropped. @default 536870912 (512 MiB: about 1.4 million results,
   * 4.8 h of 16 cameras at 5 frames/s)
   */
  maxBytes?: number;
  /** Most results kept; the oldest beyond it are dropped. @default maxBytes / ENTRY_OVERHEAD_BYTES (never first) */
  maxCount?: number;
  /** Oldest result kept, in ms; older ones are dropped. @default 86400000 (24 h) */
  maxAgeMs?: number;
  /** Records per journal segment before a new one starts. @default 10000 */
  segmentRecords?: number;
}

/**
 * What one result costs the outbox in memory beyond its own bytes, id and subject (the record, its index entry and
 * string headers): 260 bytes measured on Node 20 (1,000,000 results of 110 bytes took 369 MB of resident memory).
 */
export const ENTRY_OVERHEAD_BYTES = 260;

export const DEFAULT_OUTBOX = { maxBytes: 512 * 1024 ** 2, maxAgeMs: 24 * 3600_000, segmentRecords: 10_000 } as const;

export type DropReason = 'full' | 'expired';

/** How full the outbox is against its limits. */
export interface OutboxUse {
  count: number;
  bytes: number;
  maxBytes: number;
  /** Age of the oldest result kept, in ms (0 when empty). */
  oldestAgeMs: number;
  maxAgeMs: number;
}

/** The shares of a limit at which the outbox says it is filling (one log line each way), before it drops. */
export const FILL_LEVELS = [0.5, 0.8, 0.95] as const;

/** A result held: its bytes as a one-byte string, which costs half the memory of a buffer of its own. */
interface Held {
  id: string;
  subject: string;
  data: string;
  t: number;
  seg: number;
}

const cost = (h: { id: string; subject: string; data: { length: number } }) =>
  h.data.length + h.id.length + h.subject.length + ENTRY_OVERHEAD_BYTES;

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
  private bytes = 0;
  private level = 0; // the highest FILL_LEVELS share reached, 0 below the first
  private readonly o: Required<Omit<OutboxOptions, 'dir'>> & { dir?: string };

  private constructor(
    options: OutboxOptions,
    private readonly onDrop: (reason: DropReason, n: number) => void,
    private readonly onLevel: (level: number, use: OutboxUse) => void,
  ) {
    const maxBytes = options.maxBytes ?? DEFAULT_OUTBOX.maxBytes;
    this.o = {
      ...DEFAULT_OUTBOX,
      maxCount: Math.floor(maxBytes / ENTRY_OVERHEAD_BYTES),
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
    };
  }

  /**
   * Opens the outbox, reading back what an earlier run left unsettled in `dir`. `onDrop` hears of results dropped
   * past a limit; `onLevel` of each FILL_LEVELS share of a limit (size or age) crossed, up or down (0: below them).
   */
  static open(
    options: OutboxOptions = {},
    onDrop: (reason: DropReason, n: number) => void = () => undefined,
    onLevel: (level: number, use: OutboxUse) => void = () => undefined,
  ): Outbox {
    const box = new Outbox(options, onDrop, onLevel);
    if (options.dir) box.recover(options.dir);
    return box;
  }

  get size(): number {
    return this.queue.length;
  }

  /** How full it is now. */
  use(now = Date.now()): OutboxUse {
    return {
      count: this.queue.length,
      bytes: this.bytes,
      maxBytes: this.o.maxBytes,
      oldestAgeMs: this.queue.length ? Math.max(0, now - this.queue[0]!.t) : 0,
      maxAgeMs: this.o.maxAgeMs,
    };
  }

  /** Adds a result at the end; drops the oldest when the count limit is passed. */
  append(entry: OutboxEntry): void {
    const data = Buffer.from(entry.data.buffer, entry.data.byteOffset, entry.data.byteLength).toString('latin1');
    const held: Held = { id: entry.id, subject: entry.subject, data, t: entry.t, seg: this.seg };
    if (this.o.dir) {
      if (this.segCount >= this.o.segmentRecords) this.roll();
      held.seg = this.seg;
      this.write({ id: entry.id, s: entry.subject, d: Buffer.from(data, 'latin1').toString('base64'), t: entry.t });
      this.segCount++;
    }
    this.open.set(held.seg, (this.open.get(held.seg) ?? 0) + 1);
    this.queue.push(held);
    this.index.set(held.id, held);
    this.bytes += cost(held);
    // The oldest go until both limits hold: the count, and the size of what is left.
    const countOver = Math.max(0, this.queue.length - this.o.maxCount);
    let over = 0;
    for (let b = this.bytes; over < this.queue.length && (over < countOver || b > this.o.maxBytes); over++)
      b -= cost(this.queue[over]!);
    if (over > 0) this.drop('full', over);
    this.checkLevel(Date.now());
  }

  /** Up to `n` oldest entries, after dropping those past the age limit. */
  head(n: number, now = Date.now()): OutboxEntry[] {
    let expired = 0;
    while (expired < this.queue.length && now - this.queue[expired]!.t > this.o.maxAgeMs) expired++;
    if (expired) this.drop('expired', expired);
    this.checkLevel(now);
    return this.queue.slice(0, n).map((h) => ({ ...h, data: Buffer.from(h.data, 'latin1') }));
  }

  /** Marks entries as delivered (acknowledged by the stream). */
  settle(ids: Iterable<string>): void {
    const gone = new Set<string>();
    for (const id of ids) {
      const held = this.index.get(id);
      if (!held) continue;
      this.index.delete(id);
      gone.add(id);
      this.bytes -= cost(held);
      this.release(held);
    }
    if (gone.size === 0) return;
    // Acknowledgements usually settle a run at the head; otherwise filter (never spread: the queue may be 100,000 long).
    let head = 0;
    while (head < this.queue.length && gone.has(this.queue[head]!.id)) head++;
    if (head === gone.size) this.queue.splice(0, head);
    else this.queue = this.queue.filter((h) => !gone.has(h.id));
    this.checkLevel(Date.now());
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
      this.bytes -= cost(h);
      this.release(h);
    }
    this.onDrop(reason, dropped.length);
  }

  private checkLevel(now: number): void {
    const u = this.use(now);
    const share = Math.max(u.bytes / u.maxBytes, u.oldestAgeMs / u.maxAgeMs);
    let level = 0;
    for (const l of FILL_LEVELS) if (share >= l) level = l;
    if (level === this.level) return;
    this.level = level;
    this.onLevel(level, u);
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
