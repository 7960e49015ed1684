import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO } from './harness.js';

const run = promisify(execFile);

describe('demo - the main job', () => {
  it('--json prints one summary object with the documented keys', async () => {
    const { stdout } = await run(
      process.execPath,
      [`${REPO}packages/demo/dist/cli.js`, '--json', '--limit', '300', '--operating-point', 'accurate'],
      {
        cwd: REPO,
        timeout: 170_000,
      },
    );
    const s = JSON.parse(stdout);
    for (const key of [
      'frames',
      'results',
      'accuracy',
      'offload_rate',
      'fallbacks',
      'operating_point',
      'bytes_per_offload',
      'latency_ms',
    ]) {
      expect(s).toHaveProperty(key);
    }
    expect(s.frames).toBe(300);
    expect(s.results).toBe(300);
    expect(s.results_stored).toBe(300); // every result is in the results stream too
    expect(stdout).not.toMatch(/\d\.\d{6,}/); // figures rounded to what was measured, no float noise
    expect(s.fallbacks).toBe(0);
    expect(s.operating_point).toBe('accurate');
    expect(s.offload_rate).toBeGreaterThan(0);
    expect(s.bytes_per_offload).toBeGreaterThan(3072);
    for (const tier of ['edge', 'offloaded']) {
      expect(s.latency_ms[tier].p50).toBeGreaterThan(0);
      expect(s.latency_ms[tier].p99).toBeGreaterThanOrEqual(s.latency_ms[tier].p50);
    }
    expect(
      s.exits.edge.reduce((a: number, b: number) => a + b, 0) +
        s.exits.cloud.reduce((a: number, b: number) => a + b, 0),
    ).toBe(300);
  });
});
