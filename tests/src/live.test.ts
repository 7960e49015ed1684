import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { track } from '@cascade/demo';
import { CHROMIUM_FLAGS, REPO, requireProgram } from './harness.js';

describe('live view - a running demo in headless Chromium', () => {
  it('shows offload rate, exits and latency, updating as frames arrive', async () => {
    requireProgram('/usr/bin/chromium');
    // Its own process group, so that a failed test also kills the demo's nats-server and workers.
    const demo = track(
      spawn(
        process.execPath,
        [
          join(REPO, 'packages/demo/dist/cli.js'),
          '--live',
          '0',
          '--json',
          '--limit',
          '200',
          '--fps',
          '100',
          '--operating-point',
          'accurate',
        ],
        { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
      ),
      { group: true },
    );
    let stdout = '';
    let stderr = '';
    demo.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no live view URL in 60 s:\n${stderr}`)), 60_000);
      demo.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /live view on (http:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      demo.once('exit', (code) => reject(new Error(`demo exited with ${code}:\n${stderr}`)));
    });
    let seen: number | undefined;
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS });
    try {
      const page = await browser.newPage({ viewport: { width: 900, height: 640 } });
      await page.goto(url);
      await page.waitForFunction(() => Number(document.body.dataset.frames) > 0, undefined, { timeout: 30_000 });
      const first = Number(await page.evaluate(() => document.body.dataset.frames));
      seen = first;
      const shot1 = await page.screenshot();
      await page.waitForFunction((n) => Number(document.body.dataset.frames) > n, first, { timeout: 30_000 });
      const shot2 = await page.screenshot();

      expect(await page.textContent('#offload')).toMatch(/^\d+\.\d %$/);
      const offload = Number((await page.textContent('#offload'))!.replace(' %', ''));
      expect(offload).toBeGreaterThan(5);
      expect(offload).toBeLessThan(50);
      expect(await page.locator('#exits .row').count()).toBeGreaterThanOrEqual(4);
      expect(await page.textContent('#exits')).toMatch(/exit 1 \(edge\)/);
      expect(await page.textContent('#exits')).toMatch(/\(cloud\)/);
      expect(await page.textContent('#latency')).toMatch(/offloaded \(ms\)\d+\.\d\d\d+\.\d\d/);
      expect(await page.textContent('#cloud')).toBe('reachable');

      // The screenshots are real renderings and change as the numbers update.
      const dir = mkdtempSync(join(tmpdir(), 'cascade-live-'));
      writeFileSync(join(dir, 'live-1.png'), shot1);
      writeFileSync(join(dir, 'live-2.png'), shot2);
      expect(shot1.subarray(1, 4).toString()).toBe('PNG');
      expect(shot2.length).toBeGreaterThan(10_000);
      expect(Buffer.compare(shot1, shot2)).not.toBe(0);
    } finally {
      await browser.close();
      demo.kill('SIGINT');
    }
    const code = await new Promise<number | null>((resolve) =>
      demo.exitCode !== null ? resolve(demo.exitCode) : demo.once('exit', resolve),
    );
    expect(code).toBe(0);
    const summary = JSON.parse(stdout);
    // Paced at 100 frames/s, stopped by SIGINT mid-replay: every frame taken in has its result, in the stream too.
    expect(summary.frames).toBeGreaterThan(seen ?? 0);
    expect(summary.results).toBe(summary.frames);
    expect(summary.results_stored).toBe(summary.frames);
  });
});
