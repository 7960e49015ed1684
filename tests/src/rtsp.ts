// A real RTSP camera for the tests: GStreamer's RTSP server (tests/rtsp/serve.py, the system Python) sending a
// camera-like H.264 file, made once per test process from the sample video, to every reader, without re-encoding.
import { stopChild, track } from '@cascade/demo';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO, requireProgram } from './harness.js';

let file: string | undefined;

/** 1280x720 H.264 at 25 frames/s, a keyframe a second, no B-frames: `seconds` long (made once). */
export function cameraFile(seconds = 30): string {
  if (file && existsSync(file)) return file;
  requireProgram('ffmpeg');
  file = join(mkdtempSync(join(tmpdir(), 'cascade-camera-')), 'cam720.mp4');
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-stream_loop', '-1', '-i', join(REPO, 'samples/cifar10-test-1000.mp4'),
    '-t', String(seconds), '-vf', 'scale=1280:720:flags=neighbor,fps=25', '-c:v', 'libx264', '-profile:v', 'baseline',
    '-pix_fmt', 'yuv420p', '-g', '25', '-bf', '0', '-preset', 'ultrafast', file]); // prettier-ignore
  return file;
}

export interface Camera {
  /** rtsp://[user@]127.0.0.1:PORT/cam (never with the password). */
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

/** Serves `cameraFile()` at rtsp://127.0.0.1:PORT/cam, behind basic authentication when `login` is given. */
export async function startCamera(login?: { user: string; password: string }): Promise<Camera> {
  const auth = login ? ['--user', login.user, '--password', login.password] : [];
  const proc = track(spawn('/usr/bin/python3', [join(REPO, 'tests/rtsp/serve.py'), cameraFile(), ...auth], { stdio: ['ignore', 'pipe', 'pipe'] })); // prettier-ignore
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
  const user = login ? `${login.user}@` : '';
  return {
    url: `rtsp://${user}127.0.0.1:${port}/cam`,
    proc,
    stop: () => stopChild(proc, 'SIGTERM').then(() => undefined),
  };
}
