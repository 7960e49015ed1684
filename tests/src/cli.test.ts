import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODEL, REPO, SAMPLES } from './harness.js';

const cli = (pkg: string, file: string, args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(process.execPath, [join(REPO, 'packages', pkg, 'dist', file), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
  return { status: r.status, stderr: r.stderr };
};

describe('cli - exit statuses follow the error code, and messages say what was wrong', () => {
  it('a bad flag, model directory, operating point or source exits 2', () => {
    const edge = (args: string[]) => cli('edge', 'cli.js', ['--metrics-port', '-1', ...args]);
    expect(edge(['--model', MODEL, '--source', SAMPLES, '--bogus'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/bogus/),
    });
    expect(edge(['--model', '/nonexistent', '--source', SAMPLES])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/nonexistent\/manifest.json/),
    });
    expect(edge(['--model', MODEL, '--source', SAMPLES, '--operating-point', 'nope'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/operating point "nope" is not in the manifest; it has: /),
    });
    expect(edge(['--model', MODEL, '--source', '/nonexistent.bin'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/no such file/),
    });
    expect(edge(['--model', MODEL, '--camera', 'cam-1'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/--camera: --camera "cam-1": give ID=SOURCE/),
    });
    expect(edge(['--model', MODEL, '--camera', 'cam-1=a.mp4 roi=0,0,2.5,1'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/region "0,0,2.5,1": in pixels, every value must be a whole number/),
    });
    expect(edge(['--model', MODEL, '--source', SAMPLES, '--camera', 'cam-1=a.mp4'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/give --source, or cameras/),
    });
    expect(edge(['--model', MODEL])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/--source or a camera \(--camera, --cameras; with --nats, also from the fleet\) is required/), // prettier-ignore
    });
    expect(cli('cloud', 'cli.js', ['--model', MODEL, '--max-batch', '0'])).toMatchObject({
      status: 2,
      stderr: expect.stringMatching(/--max-batch must be an integer from 1 to 1024, got 0/),
    });
  });
});
