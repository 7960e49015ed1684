// One camera: an ffmpeg that decodes it, watched. A live camera that drops (ffmpeg exits) or stalls (no frame for
// stallMs) is reopened after a backoff, forever; a file ends at its end. Frames are taken at the camera's rate into
// a bounded queue that the agent reads; what the camera would have given while it was down is counted as missed.
import { CascadeError, ERROR_CODES, redactSecrets } from '@cascade/proto';
import { spawn, type ChildProcess } from 'node:child_process';
import { Backoff } from './backoff.js';
import { ffmpegArgs, frameBytes, isLive } from './filters.js';
import type { CameraMetrics } from './metrics.js';
import { FrameQueue } from './queue.js';
import type { CameraSpec } from './spec.js';

/** A frame as the edge takes it: planar RGB at the model's size, one per region. */
export interface CameraFrame {
  id: string;
  pixels: Uint8Array;
  capturedUnixMs: number;
  /** The region of interest it was cut from; none for the whole frame. */
  region?: string;
}

/** What a camera did since it started: its metrics' values, also without a registry. */
export interface CameraFigures {
  decoded: number;
  taken: number;
  dropped: number;
  missed: number;
  reconnects: number;
  decode_errors: number;
}

/** connecting: first opening; up: frames arrive; down: dropped, stalled or refused, reopened after a backoff. */
export type CameraState = 'connecting' | 'up' | 'down' | 'ended' | 'failed' | 'stopped';

export interface CameraOptions {
  /** The model's input side. */
  size: number;
  /** No frame for this long: the camera is stalled and reopened. @default 5000 */
  stallMs?: number;
  /** Taken frames waiting for the agent, per region; beyond, the oldest is dropped. @default 2 */
  queue?: number;
  /** The camera's password (from a secret), put into an rtsp:// URL that names the user. */
  password?: string;
  /** The camera's full id, for logs and metric labels. @default spec.id */
  edge?: string;
  log?: (event: string, fields: Record<string, unknown>) => void;
  metrics?: CameraMetrics;
  backoff?: Backoff;
  /** The ffmpeg program. @default ffmpeg */
  ffmpeg?: string;
}

export class SourceError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.SOURCE, message, options);
  }
}

/** The last characters of ffmpeg's stderr kept to say why it stopped. */
const STDERR_KEEP = 2048;
/** ffmpeg lines that report a damaged or undecodable picture (loglevel error). */
const DECODE_ERROR = /decod|conceal|corrupt|invalid nal|missing picture|error while|non-existing pps|no frame!/i;

export class Camera {
  state: CameraState = 'connecting';
  /** Why the camera is down or failed, as ffmpeg said it (no password). */
  lastError: string | undefined;
  readonly edge: string;
  private readonly queue: FrameQueue<CameraFrame>;
  private readonly live: boolean;
  private readonly bytes: number;
  private readonly periodMs: number;
  private readonly stallMs: number;
  private readonly backoff: Backoff;
  private proc: ChildProcess | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private lastFrameAt = performance.now();
  private downSince: number | undefined;
  private nextTake = 0;
  private count = 0;
  readonly figures: CameraFigures = { decoded: 0, taken: 0, dropped: 0, missed: 0, reconnects: 0, decode_errors: 0 };

  constructor(
    readonly spec: CameraSpec,
    private readonly o: CameraOptions,
  ) {
    this.edge = o.edge ?? spec.id;
    this.live = isLive(spec.substream ?? spec.url);
    this.bytes = frameBytes(spec, o.size);
    this.periodMs = 1000 / spec.fps;
    this.stallMs = o.stallMs ?? 5000;
    this.backoff = o.backoff ?? new Backoff();
    const capacity = (o.queue ?? 2) * Math.max(1, spec.regions.length);
    this.queue = new FrameQueue(capacity, () => {
      this.figures.dropped++;
      o.metrics?.dropped.inc({ edge: this.edge });
    });
    o.metrics?.add(this.edge, () => (performance.now() - this.lastFrameAt) / 1000);
  }

  /** The source as logs show it: no password. */
  get name(): string {
    return redactSecrets(this.spec.substream ?? this.spec.url);
  }

  /** Starts decoding; frames() yields them. */
  start(): this {
    this.loop ??= this.supervise();
    return this;
  }

  /** The taken frames, until the camera is stopped, or its file ends or cannot be read. */
  frames(): AsyncIterable<CameraFrame> {
    return this.queue;
  }

  /** Stops ffmpeg and the reopening; frames() ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.proc?.kill('SIGKILL');
    this.wake?.();
    await this.loop;
    this.o.metrics?.remove(this.edge);
  }

  private log(event: string, fields: Record<string, unknown> = {}): void {
    this.o.log?.(event, { edge: this.edge, source: this.name, ...fields });
  }

  private async supervise(): Promise<void> {
    try {
      while (!this.stopped) {
        const end = await this.runOnce();
        if (this.stopped) break;
        if (end.kind === 'ended') {
          this.state = 'ended';
          this.log('camera_ended', { frames: this.count });
          break;
        }
        if (!this.live && end.frames === 0) {
          // A file that ffmpeg cannot read will not get better.
          this.state = 'failed';
          this.lastError = end.reason;
          this.log('camera_failed', { error: end.reason });
          break;
        }
        const wait = this.backoff.next();
        if (this.state !== 'down') {
          this.downSince ??= this.lastFrameAt;
          this.log('camera_down', { error: end.reason, retry_in_s: Math.round(wait / 100) / 10 });
        }
        this.state = 'down';
        this.lastError = end.reason;
        this.o.metrics?.up.set({ edge: this.edge }, 0);
        await this.sleep(wait);
        if (!this.stopped) {
          this.figures.reconnects++;
          this.o.metrics?.reconnects.inc({ edge: this.edge });
        }
      }
    } finally {
      if (this.downSince !== undefined) this.countMissed(performance.now());
      if (this.stopped) this.state = 'stopped';
      this.o.metrics?.up.set({ edge: this.edge }, 0);
      this.queue.close();
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** What the camera would have given at its rate between downSince and `now`. */
  private countMissed(now: number): number {
    const missed = Math.floor((now - this.downSince!) / this.periodMs);
    this.downSince = undefined;
    this.figures.missed += missed;
    if (missed > 0) this.o.metrics?.missed.inc({ edge: this.edge }, missed);
    return missed;
  }

  /** One ffmpeg, until it exits or stalls. */
  private runOnce(): Promise<{ kind: 'ended' | 'dropped'; reason: string; frames: number }> {
    const input = this.spec.substream ?? this.spec.url;
    const url = this.o.password !== undefined ? withPassword(input, this.o.password) : input;
    const args = ffmpegArgs(this.spec, this.o.size, url);
    return new Promise((resolve) => {
      let stderr = '';
      let frames = 0;
      let stalled = false;
      let pending: Buffer = Buffer.alloc(0);
      let last = performance.now();
      const proc = spawn(this.o.ffmpeg ?? 'ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      this.proc = proc;
      const watch = setInterval(
        () => {
          if (performance.now() - last > this.stallMs) {
            stalled = true;
            proc.kill('SIGKILL');
          }
        },
        Math.min(500, this.stallMs / 4),
      );
      proc.stderr!.on('data', (d: Buffer) => {
        const text = d.toString();
        stderr = (stderr + text).slice(-STDERR_KEEP);
        if (frames > 0) {
          const errors = text.split('\n').filter((l) => DECODE_ERROR.test(l)).length;
          this.figures.decode_errors += errors;
          if (errors) this.o.metrics?.decodeErrors.inc({ edge: this.edge }, errors);
        }
      });
      proc.stdout!.on('data', (chunk: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
        while (pending.length >= this.bytes) {
          const frame = pending.subarray(0, this.bytes);
          pending = pending.subarray(this.bytes);
          last = performance.now();
          frames++;
          this.decoded(frame, last);
        }
      });
      proc.once('error', (err) => {
        stderr = `ffmpeg could not start (${err.message}): install ffmpeg`;
      });
      proc.once('close', (code, signal) => {
        clearInterval(watch);
        this.proc = undefined;
        const said = redactSecrets(stderr.trim().split('\n').filter(Boolean).slice(-2).join('; '));
        let reason: string;
        if (stalled)
          reason = frames ? `stalled: no frame for ${this.stallMs / 1000} s` : `no frame within ${this.stallMs / 1000} s of opening`; // prettier-ignore
        else if (said) reason = said;
        else if (signal) reason = `ffmpeg killed (${signal})`;
        else if (code === 0)
          reason = this.live ? 'the camera ended the stream' : 'the file ended before its first frame';
        else reason = `ffmpeg exited with code ${code}`;
        if (!this.live && !stalled && code === 0 && frames > 0)
          resolve({ kind: 'ended', reason: 'end of file', frames });
        else resolve({ kind: 'dropped', reason, frames });
      });
    });
  }

  /** A decoded frame: counted; taken when the camera's next frame is due, cut into its regions, queued. */
  private decoded(frame: Buffer, now: number): void {
    const m = this.o.metrics;
    this.figures.decoded++;
    m?.decoded.inc({ edge: this.edge });
    this.lastFrameAt = now;
    if (this.state !== 'up') {
      const missed = this.downSince !== undefined ? this.countMissed(now) : 0;
      const was = this.state;
      this.state = 'up';
      this.lastError = undefined;
      this.backoff.reset();
      m?.up.set({ edge: this.edge }, 1);
      this.log('camera_up', was === 'down' ? { missed } : {});
    }
    // On the camera's own grid, a tenth of a period early at most; after a gap, start again from now.
    if (now < this.nextTake - this.periodMs / 10) return;
    this.nextTake = this.nextTake + this.periodMs > now - this.periodMs ? this.nextTake + this.periodMs : now + this.periodMs; // prettier-ignore
    this.figures.taken++;
    m?.taken.inc({ edge: this.edge });
    const n = this.count++;
    const size = this.o.size;
    const one = size * size * 3;
    const captured = Date.now();
    const regions = this.spec.regions.length ? this.spec.regions : [undefined];
    regions.forEach((r, i) => {
      const pixels = toPlanar(frame.subarray(i * one, (i + 1) * one), size);
      this.queue.push({ id: `${this.spec.id}#${n}`, pixels, capturedUnixMs: captured, ...(r ? { region: r.name } : {}) }); // prettier-ignore
    });
  }
}

/** `url` with `password` in its user info (`rtsp://user@host` becomes `rtsp://user:password@host`). */
export function withPassword(url: string, password: string | undefined): string {
  if (password === undefined) return url;
  const u = new URL(url);
  if (!/^rtsps?:$/.test(u.protocol)) throw new SourceError(`source ${redactSecrets(url)}: a password applies to rtsp:// sources only`); // prettier-ignore
  if (!u.username) throw new SourceError(`source ${redactSecrets(url)}: name the camera's user in the URL (rtsp://USER@HOST/...) to give it a password`); // prettier-ignore
  if (u.password) throw new SourceError(`source ${redactSecrets(url)}: the URL has a password already; give it once, by the URL or by a secret`); // prettier-ignore
  u.password = password;
  return u.toString();
}

/** Interleaved RGB [H, W, 3] to planar [3, H, W]. */
export function toPlanar(hwc: Uint8Array, size: number): Uint8Array {
  const plane = size * size;
  const out = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    out[i] = hwc[i * 3]!;
    out[plane + i] = hwc[i * 3 + 1]!;
    out[2 * plane + i] = hwc[i * 3 + 2]!;
  }
  return out;
}
