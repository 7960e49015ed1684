import {
  Camera,
  filterGraph,
  frameBytes,
  isLive,
  SourceError,
  toPlanar,
  withPassword,
  type Fit,
  type Region,
} from '@cascade/cameras';
import { redactSecrets } from '@cascade/proto';
import { spawn } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { Frame } from './path.js';

export type { Frame } from './path.js';
export { SourceError, toPlanar, withPassword } from '@cascade/cameras';

export interface SourceOptions {
  /** Model input height and width. */
  size: number;
  /** Frames per second sampled from video, RTSP and cameras. @default 5 */
  fps?: number;
  /** Stop after this many frames. */
  limit?: number;
  /**
   * The camera's password, resolved from a secret (a file, a variable, a Kubernetes Secret), put into an rtsp://
   * URL that names only the user; it never appears in frame ids, logs or the fleet's settings.
   */
  password?: string;
  /** How a frame that is not square becomes the model's input. @default crop */
  fit?: Fit;
  /** Regions of interest, each classified as its own frame (the result names it); none: the whole frame. */
  regions?: Region[];
  /** A live source with no frame for this long is reopened. @default 5000 */
  stallMs?: number;
  /** ffmpeg's -hwaccel for decoding. */
  hwaccel?: string;
  /** Where a live source says it dropped, stalled or came back. */
  log?: (event: string, fields: Record<string, unknown>) => void;
  /** Stops a live source (also while it waits for its camera to come back). */
  signal?: AbortSignal;
}

const CIFAR_RECORD = 1 + 3 * 32 * 32;
const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg']);

/**
 * Opens a source by its spec: a CIFAR-10 binary file (`.bin`, `.bin.gz` or `cifar:PATH`), a directory of PNG/JPEG
 * images, an `rtsp://` URL, a V4L2 camera (`/dev/videoN` or `v4l2:/dev/videoN`), or any video file ffmpeg reads.
 */
export async function openSource(spec: string, options: SourceOptions): Promise<AsyncIterable<Frame>> {
  if (options.password !== undefined && !/^rtsps?:\/\//.test(spec))
    throw new SourceError(`source ${redactSecrets(spec)}: a password applies to rtsp:// sources only`);
  if (spec.startsWith('cifar:') || /\.bin(\.gz)?$/.test(spec)) return cifarFrames(spec.replace(/^cifar:/, ''), options);
  if (isLive(spec)) return liveFrames(spec, options);
  const info = await stat(spec).catch(() => {
    throw new SourceError(`source ${redactSecrets(spec)}: no such file or directory`);
  });
  if (info.isDirectory()) return imageDirFrames(spec, options);
  return ffmpegFrames(spec, [], options);
}

/**
 * An RTSP camera or a V4L2 device as one camera of @cascade/cameras: reopened with backoff when it drops or stalls,
 * until the frame limit or the reader stops.
 */
async function* liveFrames(url: string, o: SourceOptions): AsyncIterable<Frame> {
  if (o.password !== undefined) withPassword(url, o.password); // refuse a bad URL here, before the first opening
  const camera = new Camera(
    {
      id: basename(redactSecrets(url)) || 'camera',
      url,
      fps: o.fps ?? 5,
      fit: o.fit ?? 'crop',
      regions: o.regions ?? [],
      ...(o.hwaccel ? { hwaccel: o.hwaccel } : {}),
    },
    {
      size: o.size,
      ...(o.stallMs ? { stallMs: o.stallMs } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
      ...(o.log ? { log: o.log } : {}),
    },
  ).start();
  const stop = () => void camera.stop();
  o.signal?.addEventListener('abort', stop, { once: true });
  let n = 0;
  try {
    for await (const f of camera.frames()) {
      yield f;
      if (++n >= (o.limit ?? Infinity)) return;
    }
  } finally {
    o.signal?.removeEventListener('abort', stop);
    await camera.stop();
  }
}

async function* cifarFrames(path: string, o: SourceOptions): AsyncIterable<Frame> {
  let raw: Buffer = await readFile(path).catch((err: Error) => {
    throw new SourceError(`source ${path}: ${err.message}`);
  });
  if (path.endsWith('.gz')) raw = gunzipSync(raw);
  if (raw.length % CIFAR_RECORD !== 0) {
    throw new SourceError(
      `source ${path}: ${raw.length} bytes is not a whole number of ${CIFAR_RECORD}-byte CIFAR records`,
    );
  }
  if (o.size !== 32)
    throw new SourceError(`source ${path}: CIFAR images are 32x32 but the model takes ${o.size}x${o.size}`);
  const n = Math.min(raw.length / CIFAR_RECORD, o.limit ?? Infinity);
  const name = basename(path);
  for (let i = 0; i < n; i++) {
    const rec = raw.subarray(i * CIFAR_RECORD, (i + 1) * CIFAR_RECORD);
    yield { id: `${name}#${i}`, pixels: new Uint8Array(rec.subarray(1)), label: rec[0]!, capturedUnixMs: Date.now() };
  }
}

async function* imageDirFrames(dir: string, o: SourceOptions): AsyncIterable<Frame> {
  const files = (await readdir(dir)).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
  if (files.length === 0) throw new SourceError(`source ${dir}: no .png, .jpg or .jpeg files`);
  const n = Math.min(files.length, o.limit ?? Infinity);
  for (let i = 0; i < n; i++) {
    const file = join(dir, files[i]!);
    for await (const f of ffmpegFrames(file, [], { ...o, limit: 1 }, true)) yield { ...f, id: files[i]! };
  }
}

/**
 * Decodes a file with ffmpeg, as fast as it reads, at the sampling rate (stills: once), each frame fitted and cut
 * into its regions in ffmpeg's filters, then to planar CHW.
 */
async function* ffmpegFrames(
  input: string,
  inputArgs: string[],
  o: SourceOptions,
  still = false,
): AsyncIterable<Frame> {
  const size = o.size;
  const cut = { fit: o.fit ?? 'crop', regions: o.regions ?? [] };
  const args = [
    '-hide_banner', '-loglevel', 'error', ...(o.hwaccel ? ['-hwaccel', o.hwaccel] : []), ...inputArgs, '-i', input,
    '-filter_complex', filterGraph(cut, size, still ? [] : [`fps=${o.fps ?? 5}`]), '-map', '[out]',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ]; // prettier-ignore
  const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = new Tail(STDERR_TAIL_CHARS); // a lossy stream may warn on every frame, for as long as it runs
  proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
  const name = redactSecrets(input); // what logs, errors and frame ids say of the input: no password
  const exited = new Promise<number>((resolve, reject) => {
    proc.on('error', (err) => reject(new SourceError(`ffmpeg could not start (${err.message}): install ffmpeg`)));
    proc.on('close', (code) => resolve(code ?? 1));
  });
  const bytes = frameBytes(cut, size);
  const one = size * size * 3;
  const regions = cut.regions.length ? cut.regions : [undefined];
  let pending: Buffer = Buffer.alloc(0);
  let count = 0;
  const limit = o.limit ?? Infinity;
  try {
    for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= bytes && count < limit) {
        const frame = pending.subarray(0, bytes);
        pending = pending.subarray(bytes);
        const id = `${basename(name)}#${count}`;
        const capturedUnixMs = Date.now();
        for (const [i, r] of regions.entries()) {
          const pixels = toPlanar(frame.subarray(i * one, (i + 1) * one), size);
          yield { id, pixels, capturedUnixMs, ...(r ? { region: r.name } : {}) };
        }
        count++;
      }
      if (count >= limit) break;
    }
  } finally {
    if (proc.exitCode === null) proc.kill('SIGTERM');
  }
  const code = await exited;
  if (count === 0 && code !== 0)
    throw new SourceError(`source ${name}: ffmpeg failed: ${redactSecrets(stderr.text().trim()) || `exit ${code}`}`);
}

/** The last characters written to ffmpeg's stderr that an error quotes. */
export const STDERR_TAIL_CHARS = 4096;

/** The last `max` characters of what was pushed, in memory bounded by twice that whatever the total. */
export class Tail {
  private buf = '';
  constructor(private readonly max: number) {}

  push(s: string): void {
    this.buf += s;
    if (this.buf.length > 2 * this.max) this.buf = this.buf.slice(-this.max);
  }

  text(): string {
    return this.buf.length > this.max ? this.buf.slice(-this.max) : this.buf;
  }
}

/** The frames of `source` at `fps` (unpaced when undefined), until `signal` aborts. */
export async function* paced(
  source: AsyncIterable<Frame>,
  fps: number | undefined,
  signal: AbortSignal | undefined,
): AsyncGenerator<Frame> {
  const gap = fps ? 1000 / fps : 0;
  let next = performance.now();
  for await (const frame of source) {
    if (signal?.aborted) return;
    if (gap) {
      next += gap;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    yield frame;
  }
}
