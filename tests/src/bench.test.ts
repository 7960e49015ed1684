import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MODEL, REPO } from './harness.js';

const run = promisify(execFile);

describe('bench - smoke run keeps the harness working', () => {
  it('writes every section of the report with numbers in it', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cascade-bench-'));
    await run(process.execPath, [join(REPO, 'bench/dist/run.js'), '--smoke', '--out', out], {
      cwd: REPO,
      timeout: 170_000,
    });
    const r = JSON.parse(readFileSync(join(out, 'smoke.json'), 'utf8'));
    expect(r.smoke).toBe(true);
    const stages = JSON.parse(readFileSync(join(MODEL, 'manifest.json'), 'utf8')).stages.length as number;
    expect(r.raw).toHaveLength(stages * 3 * 2); // every stage at batch 1, 8 and 32, with 1 and 2 threads
    for (const x of r.raw) {
      expect(x.samples_per_second.median).toBeGreaterThan(0);
      expect(x.cpu_seconds_per_sample).toBeGreaterThan(0);
    }
    expect(r.edge.map((e: { threads: number; pipeline: number }) => `${e.threads}/${e.pipeline}`)).toEqual([
      '1/1',
      '1/2',
      '2/1',
      '2/2',
    ]);
    expect(r.worker.capacity.map((c: { max_batch: number }) => c.max_batch)).toEqual([32, 1]);
    for (const c of r.worker.capacity) expect(c.cpu_seconds_per_request).toBeGreaterThan(0);
    expect(r.worker.open_loop).toHaveLength(3);
    expect(r.cascade.map((c: { name: string }) => c.name)).toEqual(
      expect.arrayContaining(['balanced', 'all-cloud', 'all-edge', 'balanced, image']),
    );
    for (const c of r.cascade) expect(c.frames).toBeGreaterThan(0);
    const cloud = r.cascade.find((c: { kind: string }) => c.kind === 'all-cloud');
    expect(cloud.offload_rate).toBe(1);
    const allEdge = r.cascade.find((c: { kind: string }) => c.kind === 'all-edge');
    expect(allEdge.cloud_macs_per_frame).toBe(0);
    expect(allEdge.edge_cpu_seconds_per_frame).toBeGreaterThan(0);
    const balanced = r.cascade.find((c: { name: string }) => c.name === 'balanced');
    expect(allEdge.edge_macs_per_frame).toBeGreaterThan(balanced.edge_macs_per_frame); // every stage against stage 0
    expect(r.transport.worker_ms.p50).toBeGreaterThan(r.transport.bare_nats_ms.p50);
    const md = readFileSync(join(out, 'smoke.md'), 'utf8');
    for (const h of ['## 1.', '## 2.', '## 3.', '## 4.', '## 5.', '## 6.']) expect(md).toContain(h);
  });
});

describe('bench - the adaptive scenarios run', () => {
  it('drift: fixed thresholds and the controller over clean and corrupted frames, with true and estimated loss', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cascade-scenarios-'));
    await run(
      process.execPath,
      [join(REPO, 'bench/dist/scenarios.js'), '--only', 'drift', '--frames', '60', '--fps', '200', '--out', out],
      { cwd: REPO, timeout: 170_000 },
    );
    const r = JSON.parse(readFileSync(join(out, 'scenarios-drift.json'), 'utf8'));
    expect(r.drift.segments).toEqual(['clean', 'dark', 'blur', 'noise', 'jpeg']);
    for (const name of ['fixed', 'controller']) {
      const run = r.drift.runs[name];
      expect(run.segments.map((s: { frames: number }) => s.frames)).toEqual([60, 60, 60, 60, 60]);
      for (const s of run.segments) {
        expect(s.accuracy).toBeGreaterThan(0);
        expect(s.true_loss).toBeCloseTo(s.last_exit_accuracy - s.accuracy, 5);
      }
      expect(run.ticks.length).toBeGreaterThan(3);
      expect(run.ticks.at(-1).records).toBeGreaterThan(0); // shadow records came back from the workers
    }
    // The corrupted segments are harder than the clean one for the last exit: the corruptions are applied.
    const seg = r.drift.runs.fixed.segments;
    expect(Math.min(...seg.slice(1).map((s: { last_exit_accuracy: number }) => s.last_exit_accuracy))).toBeLessThan(
      seg[0].last_exit_accuracy,
    );
  }, 180_000);
});

describe('bench - the constrained camera runs', () => {
  it('all-edge, the cascade and all-cloud each answer every frame, paced as a camera, with the edge as its own process', async () => {
    const out = mkdtempSync(join(tmpdir(), 'cascade-edge-budget-'));
    // Budget 0: no cgroup, so the harness is checked on machines without a writable one.
    await run(
      process.execPath,
      [join(REPO, 'bench/dist/edge-budget.js'), '--budgets', '0', '--frames', '40', '--fps', '40', '--out', out],
      { cwd: REPO, timeout: 170_000 },
    );
    const r = JSON.parse(readFileSync(join(out, 'edge-budget.json'), 'utf8'));
    expect(r.runs.map((x: { config: string }) => x.config)).toEqual([
      'all-edge',
      'cascade (balanced)',
      'all-cloud (image)',
    ]);
    for (const x of r.runs) {
      expect(x.frames).toBe(40);
      expect(x.answered_fps).toBeGreaterThan(10); // paced at 40/s: the pacing holds answers back, not the edge
      expect(x.answered_fps).toBeLessThan(60);
      expect(x.behind_ms.p50).toBeGreaterThanOrEqual(0);
      expect(x.edge_cpu_ms_per_frame).toBeGreaterThan(0);
    }
    const [edge, cascade, cloud] = r.runs;
    expect(edge.offload_rate).toBe(0);
    expect(cloud.offload_rate).toBe(1);
    expect(cascade.offload_rate).toBeGreaterThan(0);
    expect(cascade.offload_rate).toBeLessThan(1);
    expect(readFileSync(join(out, 'edge-budget.md'), 'utf8')).toContain('| no limit | cascade (balanced) |');
  }, 180_000);
});
