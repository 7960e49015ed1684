// What a camera is to the agent: where its video comes from, how often a frame is taken, and how a frame becomes
// the model's input (fit and regions of interest). One text form serves the command line (`--camera`), a cameras
// file and the fleet's settings, so an operator learns it once.
import { ConfigError, redactSecrets } from '@cascade/proto';

/** How a frame that is not square becomes the model's square input. */
export const FITS = ['crop', 'squash', 'letterbox'] as const;
export type Fit = (typeof FITS)[number];

/** A region of interest: a rectangle of the frame classified as its own stream (in pixels, or fractions of it). */
export interface Region {
  name: string;
  x: number;
  y: number;
  w: number;
  h: number;
  /** `fraction`: every value is at most 1, a share of the frame's width or height. */
  unit: 'px' | 'fraction';
}

export interface CameraSpec {
  /** The camera's name (`cam-1`), or its full id (`site-a.agent-1.cam-1`). */
  id: string;
  /** rtsp:// URL, video file or /dev/videoN. */
  url: string;
  /** A lower-resolution stream of the same camera, decoded instead of `url` (the camera's substream). */
  substream?: string;
  /** Frames taken per second. @default 5 */
  fps: number;
  /** @default crop (the centre square) */
  fit: Fit;
  /** None: the whole frame. */
  regions: Region[];
  /** ffmpeg's -hwaccel (cuda, vaapi, qsv, ...); none decodes on the CPU. */
  hwaccel?: string;
}

export const CAMERA_NAME = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const REGION_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const DEFAULT_CAMERA_FPS = 5;
const MAX_REGIONS = 16;

/** The camera fields after the URL, as `name=value` words: fit=, roi= (repeatable), fps=, substream=, hwaccel=. */
const FIELDS = ['fit', 'roi', 'fps', 'substream', 'hwaccel'] as const;

/**
 * A region from `[NAME:]x,y,w,h`: pixels, or fractions of the frame when every value is at most 1
 * (`bay-1:0,0.5,0.5,0.5`, the lower left quarter). Unnamed regions are r1, r2, ... in order (`index` from 1).
 */
export function parseRegion(text: string, index = 1): Region {
  const m = /^(?:([^:]+):)?([^:]+)$/.exec(text.trim());
  const fail = (why: string) => new ConfigError(`region "${text}": ${why}; give [NAME:]x,y,w,h in pixels or fractions, e.g. bay-1:0,0.5,0.5,0.5`); // prettier-ignore
  if (!m) throw fail('not a region');
  const name = m[1] ?? `r${index}`;
  if (!REGION_NAME.test(name)) throw fail('its name must be letters, digits, "-" or "_"');
  const parts = m[2]!.split(',').map((s) => s.trim());
  if (parts.length !== 4 || parts.some((p) => p === '' || !Number.isFinite(Number(p)))) throw fail('four numbers are needed'); // prettier-ignore
  const [x, y, w, h] = parts.map(Number) as [number, number, number, number];
  if ([x, y, w, h].some((v) => v < 0)) throw fail('no value may be negative');
  if (w === 0 || h === 0) throw fail('its width and height must be above 0');
  const fraction = [x, y, w, h].every((v) => v <= 1);
  if (fraction) {
    if (x + w > 1 + 1e-9 || y + h > 1 + 1e-9) throw fail('as fractions, x + w and y + h must be at most 1');
    return { name, x, y, w, h, unit: 'fraction' };
  }
  if (![x, y, w, h].every(Number.isInteger)) throw fail('in pixels, every value must be a whole number');
  return { name, x, y, w, h, unit: 'px' };
}

/** A region as text again (the form parseRegion reads). */
export function formatRegion(r: Region): string {
  return `${r.name}:${r.x},${r.y},${r.w},${r.h}`;
}

/**
 * A camera from its text: `URL [fit=crop|squash|letterbox] [fps=N] [roi=[NAME:]x,y,w,h]... [substream=URL]
 * [hwaccel=NAME]`, words separated by spaces. `defaults` gives what a word does not (the command's --fit, --fps,
 * --roi, --hwaccel). A ConfigError names the camera and the word.
 */
export function parseCamera(
  id: string,
  text: string,
  defaults: Partial<Omit<CameraSpec, 'id' | 'url'>> = {},
): CameraSpec {
  if (!CAMERA_NAME.test(id)) throw new ConfigError(`camera "${id}": its name must be letters, digits, "-" or "_", in dot-separated parts`); // prettier-ignore
  const words = text.trim().split(/\s+/);
  const url = words.shift();
  if (!url) throw new ConfigError(`camera ${id}: no source given (an rtsp:// URL, a video file or /dev/videoN)`);
  const spec: CameraSpec = {
    id,
    url,
    fps: defaults.fps ?? DEFAULT_CAMERA_FPS,
    fit: defaults.fit ?? 'crop',
    regions: [...(defaults.regions ?? [])],
    ...(defaults.substream ? { substream: defaults.substream } : {}),
    ...(defaults.hwaccel ? { hwaccel: defaults.hwaccel } : {}),
  };
  let ownRegions = false;
  for (const word of words) {
    const eq = word.indexOf('=');
    const key = word.slice(0, eq);
    const value = word.slice(eq + 1);
    const where = `camera ${id} (${redactSecrets(url)})`;
    if (eq <= 0 || !(FIELDS as readonly string[]).includes(key))
      throw new ConfigError(
        `${where}: "${redactSecrets(word)}" is not one of ${FIELDS.map((f) => `${f}=`).join(', ')}`,
      );
    try {
      if (key === 'fit') spec.fit = checkFit(value);
      else if (key === 'fps') spec.fps = checkFps(value);
      else if (key === 'roi') {
        if (!ownRegions) spec.regions = []; // the camera's own regions replace the command's
        ownRegions = true;
        spec.regions.push(parseRegion(value, spec.regions.length + 1));
      } else if (key === 'substream') spec.substream = value;
      else spec.hwaccel = value;
    } catch (err) {
      throw new ConfigError(`${where}: ${(err as Error).message}`);
    }
  }
  checkRegions(spec);
  return spec;
}

/** `ID=URL [words]`, as `--camera` takes it. */
export function parseCameraFlag(text: string, defaults?: Partial<Omit<CameraSpec, 'id' | 'url'>>): CameraSpec {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--camera "${redactSecrets(text)}": give ID=SOURCE, e.g. cam-1=rtsp://viewer@10.0.0.5/live`); // prettier-ignore
  return parseCamera(text.slice(0, eq), text.slice(eq + 1), defaults);
}

/** The text form of a camera again (parseCamera reads it back). */
export function formatCamera(c: CameraSpec): string {
  return [
    c.url,
    `fit=${c.fit}`,
    `fps=${c.fps}`,
    ...c.regions.map((r) => `roi=${formatRegion(r)}`),
    ...(c.substream ? [`substream=${c.substream}`] : []),
    ...(c.hwaccel ? [`hwaccel=${c.hwaccel}`] : []),
  ].join(' ');
}

export function checkFit(v: string): Fit {
  if (!(FITS as readonly string[]).includes(v)) throw new ConfigError(`fit "${v}" is not one of ${FITS.join(', ')}`);
  return v as Fit;
}

export function checkFps(v: string | number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || n > 120)
    throw new ConfigError(`fps "${v}" must be a number above 0, at most 120`);
  return n;
}

function checkRegions(c: CameraSpec): void {
  if (c.regions.length > MAX_REGIONS) throw new ConfigError(`camera ${c.id}: ${c.regions.length} regions; at most ${MAX_REGIONS}`); // prettier-ignore
  const names = new Set<string>();
  for (const r of c.regions) {
    if (names.has(r.name)) throw new ConfigError(`camera ${c.id}: two regions are named ${r.name}`);
    names.add(r.name);
  }
}

/** Whether two specs describe the same source, sampling and cut (when not, the camera is reopened). */
export function sameCamera(a: CameraSpec, b: CameraSpec): boolean {
  return formatCamera(a) === formatCamera(b);
}
