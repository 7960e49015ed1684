// How ffmpeg turns a camera's video into the model's inputs: every decoded frame is cut to each region, fitted to
// the model's square input and stacked, so one raw frame of size x (regions x size) comes out per decoded frame.
// The agent never touches a full-size frame; it takes frames at the camera's rate from what comes out.
import type { CameraSpec, Fit, Region } from './spec.js';

/** The region's crop filter (none for the whole frame). */
function cropFilter(r: Region): string {
  if (r.unit === 'px') return `crop=${r.w}:${r.h}:${r.x}:${r.y}`;
  // Fractions of the input's size, rounded down to even numbers for the chroma planes.
  const px = (f: number, dim: 'iw' | 'ih') => `trunc(${dim}*${f}/2)*2`;
  return `crop=${px(r.w, 'iw')}:${px(r.h, 'ih')}:${px(r.x, 'iw')}:${px(r.y, 'ih')}`;
}

/** The filters that make a square of `size` from a picture of any shape. */
export function fitFilters(fit: Fit, size: number): string[] {
  const scale = (w: string, h: string, extra = '') => `scale=${w}:${h}:flags=area${extra}`;
  switch (fit) {
    case 'squash':
      return [scale(String(size), String(size))];
    case 'crop':
      return ["crop='min(iw,ih)':'min(iw,ih)'", scale(String(size), String(size))];
    case 'letterbox':
      return [
        scale(String(size), String(size), ':force_original_aspect_ratio=decrease'),
        `pad=${size}:${size}:(ow-iw)/2:(oh-ih)/2`,
      ];
  }
}

/**
 * The filter graph from input 0 to the label [out]: one fitted square per region, stacked top to bottom; `pre`
 * filters run first, on the whole frame (a file source samples its rate there).
 */
export function filterGraph(c: Pick<CameraSpec, 'fit' | 'regions'>, size: number, pre: string[] = []): string {
  const chain = (r?: Region) => [...(r ? [cropFilter(r)] : []), ...fitFilters(c.fit, size), 'format=rgb24'].join(',');
  const input = pre.length ? `[0:v]${pre.join(',')}` : '[0:v]';
  if (c.regions.length <= 1) return `${input}${pre.length ? ',' : ''}${chain(c.regions[0])}[out]`;
  const n = c.regions.length;
  const ins = c.regions.map((_, i) => `[s${i}]`).join('');
  const parts = c.regions.map((r, i) => `[s${i}]${chain(r)}[r${i}]`);
  const stacked = c.regions.map((_, i) => `[r${i}]`).join('');
  return [`${input}${pre.length ? ',' : ''}split=${n}${ins}`, ...parts, `${stacked}vstack=inputs=${n}[out]`].join(';');
}

/** Whether a source is a live stream (reopened when it drops) rather than a file, which ends at its end. */
export function isLive(url: string): boolean {
  return /^rtsps?:\/\//.test(url) || url.startsWith('/dev/video') || url.startsWith('v4l2:');
}

/**
 * ffmpeg's arguments for a camera: its input (the substream when given; RTSP over TCP; a file read at its own rate,
 * as a camera would send it; the hardware decoder when asked for), the filter graph, and raw RGB frames on stdout,
 * one per decoded frame (no frame invented or dropped by ffmpeg).
 */
export function ffmpegArgs(c: CameraSpec, size: number, url: string = c.substream ?? c.url): string[] {
  const input: string[] = [];
  if (c.hwaccel) input.push('-hwaccel', c.hwaccel);
  if (/^rtsps?:\/\//.test(url)) input.push('-rtsp_transport', 'tcp');
  else if (url.startsWith('/dev/video') || url.startsWith('v4l2:')) input.push('-f', 'v4l2');
  else input.push('-re');
  return [
    '-hide_banner', '-nostdin', '-loglevel', 'error',
    ...input, '-i', url.replace(/^v4l2:/, ''),
    '-filter_complex', filterGraph(c, size), '-map', '[out]',
    '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1',
  ]; // prettier-ignore
}

/** Bytes of one output frame: a square of `size` per region (at least one), three bytes a pixel. */
export function frameBytes(c: Pick<CameraSpec, 'regions'>, size: number): number {
  return Math.max(1, c.regions.length) * size * size * 3;
}
