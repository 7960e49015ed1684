// A real RTSP camera for the tests: GStreamer's RTSP server (tests/rtsp/serve.py, the system Python) sending a
// camera-like H.264 or H.265 file, made once per test process from the sample video, to every reader, without
// re-encoding.
import { stopChild, track } from '@cascade/demo';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, requireProgram } from './harness.js';

export type Codec = 'h264' | 'h265';
const files = new Map<string, string>();

/**
 * 1280x720 at 25 frames/s, a keyframe a second, no B-frames, `seconds` long (made once per codec and length): the
 * server sends it once per session, so a test that reads longer reconnects at its end.
 */
export function cameraFile(seconds = 120, codec: Codec = 'h264'): string {
  const key = `${codec}/${seconds}`;
  const made = files.get(key);
  if (made && existsSync(made)) return made;
  requireProgram('ffmpeg');
  const file = join(mkdtempSync(join(tmpdir(), 'cascade-camera-')), `cam720-${codec}.mp4`);
  const encoder =
    codec === 'h264'
      ? ['-c:v', 'libx264', '-profile:v', 'baseline', '-g', '25', '-bf', '0', '-preset', 'ultrafast']
      : ['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error:keyint=25:bframes=0', '-tag:v', 'hvc1']; // prettier-ignore
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-stream_loop', '-1', '-i', join(REPO, 'samples/cifar10-test-1000.mp4'),
    '-t', String(seconds), '-vf', 'scale=1280:720:flags=neighbor,fps=25', ...encoder, '-pix_fmt', 'yuv420p', file]); // prettier-ignore
  files.set(key, file);
  return file;
}

export interface Camera {
  /** rtsp://[user@]127.0.0.1:PORT/cam (never with the password). */
  url: string;
  port: number;
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export interface CameraOptions {
  /** Basic authentication. */
  login?: { user: string; password: string };
  /** The port: give a stopped camera's to bring it back where its readers look. @default any free port */
  port?: number;
  /** @default cameraFile() */
  file?: string;
  codec?: Codec;
}

/** Serves a camera file at rtsp://127.0.0.1:PORT/cam, behind basic authentication when `login` is given. */
export async function startCamera(o: CameraOptions = {}): Promise<Camera> {
  const codec = o.codec ?? 'h264';
  const auth = o.login ? ['--user', o.login.user, '--password', o.login.password] : [];
  const args = [join(REPO, 'tests/rtsp/serve.py'), o.file ?? cameraFile(120, codec), '--codec', codec, '--port', String(o.port ?? 0), ...auth]; // prettier-ignore
  const proc = track(spawn('/usr/bin/python3', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the RTSP server did not start in 10 s: ${out}`)), 10_000);
    const read = (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on('data', read);
    proc.stderr!.on('data', read);
    proc.once('exit', (code) => reject(new Error(`the RTSP server exited (${code}): ${out} (scripts/setup test installs GStreamer's RTSP server)`))); // prettier-ignore
  });
  const user = o.login ? `${o.login.user}@` : '';
  return {
    url: `rtsp://${user}127.0.0.1:${port}/cam`,
    port,
    proc,
    stop: (signal = 'SIGTERM') => stopChild(proc, signal).then(() => undefined),
  };
}
