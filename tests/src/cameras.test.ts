// A real RTSP camera (GStreamer's RTSP server, 720p H.264 at 25 frames/s) read by cascade-edge through ffmpeg, with
// the camera's password given as a secret file: frames flow, and the password appears in no output.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, REPO } from './harness.js';
import { startCamera, type Camera } from './rtsp.js';

const run = promisify(execFile);
const PASSWORD = 'cam-secret-7d1f';

async function edge(source: string, extra: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  const args = [join(REPO, 'packages/edge/dist/cli.js'), '--model', MODEL, '--source', source, '--limit', '25',
    '--metrics-port', '-1', '--outbox-dir', 'memory', '--fleet', 'off', '--threads', '1', ...extra]; // prettier-ignore
  try {
    const { stdout, stderr } = await run(process.execPath, args, { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('an RTSP camera behind a password', () => {
  let camera: Camera;
  const secret = join(mkdtempSync(join(tmpdir(), 'cascade-secret-')), 'camera-password');
  beforeAll(async () => {
    writeFileSync(secret, `${PASSWORD}\n`, { mode: 0o600 });
    camera = await startCamera({ user: 'viewer', password: PASSWORD });
  }, 90_000);
  afterAll(() => camera?.stop());

  it('with the password from a secret file, frames flow; the password is in no result, log or error', async () => {
    expect(camera.url).not.toContain(PASSWORD);
    const r = await edge(camera.url, ['--source-password-file', secret]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(25);
    expect(JSON.parse(lines[0]!).frame).toMatch(/^cam#\d+$/);
    expect(`${r.stdout}${r.stderr}`).not.toContain(PASSWORD);
  }, 90_000);

  it('without it the camera refuses, and the error says so, naming the URL', async () => {
    const r = await edge(camera.url);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/rtsp:\/\/viewer@127\.0\.0\.1:\d+\/cam: .*401 Unauthorized/);
  }, 90_000);
});
