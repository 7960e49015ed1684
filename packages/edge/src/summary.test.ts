import { describe, expect, it } from 'vitest';
import type { EdgeResult } from './agent.js';
import { QuantileSketch } from './sketch.js';
import { formatSummary, summarise, SummaryBuilder } from './summary.js';

function result(over: Partial<EdgeResult>): EdgeResult {
  return {
    frame: 'f',
    edge: 'e',
    sequence: 1,
    class: 1,
    class_name: 'x',
    confidence: 0.9,
    exit: 0,
    tier: 'edge',
    outcome: 'exited',
    latency_ms: 1,
    offload_bytes: 0,
    model_version: 'v',
    label: 1,
    ...over,
  };
}

describe('quantile sketch - bounded memory, 1 % accuracy', () => {
  it('agrees with exact nearest-rank quantiles within 1 % on skewed data', () => {
    const s = new QuantileSketch();
    const xs: number[] = [];
    let seed = 7;
    for (let i = 0; i < 50_000; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const x = Math.exp((seed / 2 ** 31) * 8) * 0.05; // 0.05 ms … 150 ms, log-uniform
      xs.push(x);
      s.add(x);
    }
    xs.sort((a, b) => a - b);
    for (const q of [0.01, 0.5, 0.9, 0.99, 0.999]) {
      const exact = xs[Math.ceil(q * xs.length) - 1]!;
      expect(Math.abs(s.quantile(q)! - exact) / exact).toBeLessThan(0.011);
    }
    expect(s.quantile(1)).toBe(xs.at(-1));
  });

  it('keeps a fixed number of buckets however many values it sees', () => {
    const s = new QuantileSketch();
    for (let i = 0; i < 1_000_000; i++) s.add(0.1 + (i % 1000) * 0.05);
    expect(s.count).toBe(1_000_000);
    expect(s.size).toBeLessThan(400);
    expect(new QuantileSketch().quantile(0.5)).toBeNull();
  });
});

describe('summary - what a person reads', () => {
  it('with no workers: hard frames fell back, by reason, with their latency; nothing counted as answered by the cloud', () => {
    const rs = [
      result({}),
      result({ outcome: 'fallback', exit: 1, offload_bytes: 11904, fallback_reason: 'no_responders', latency_ms: 2 }),
      result({ outcome: 'fallback', exit: 1, offload_bytes: 0, fallback_reason: 'disconnected', latency_ms: 1.5 }),
    ];
    const s = summarise(rs, 3, 'balanced', 6);
    expect(s).toMatchObject({
      offloaded: 0,
      fallbacks: 2,
      fallback_reasons: { no_responders: 1, disconnected: 1 },
      offload_rate: 0.6667,
    });
    expect(s.bytes_per_offload).toBe(11904);
    expect(s.latency_ms.offloaded.n).toBe(0);
    expect(s.latency_ms.fallback.n).toBe(2);
    const text = formatSummary(s);
    expect(text).toMatch(/offload rate +66\.67 % \(2 hard frames: 0 answered by the cloud, 2 fell back\)/);
    expect(text).toMatch(/fallbacks +2 \((no_responders 1, disconnected 1|disconnected 1, no_responders 1)\)/);
    expect(text).toMatch(/latency answered by cloud p50 \/ p99 +none/);
    expect(text).toMatch(/latency fallback p50 \/ p99 +1\.5\d \/ 2\.00 ms \(2\)/); // p50 within the sketch's 1 %
  });

  it('rounds fractions to 4 decimals and latencies to 0.01 ms', () => {
    const b = new SummaryBuilder(6);
    for (let i = 0; i < 1000; i++)
      b.add(
        result({ outcome: i < 207 ? 'offloaded' : 'exited', tier: i < 207 ? 'cloud' : 'edge', latency_ms: 0.123456 }),
      );
    const s = b.summary(1000, 'balanced');
    expect(s.offload_rate).toBe(0.207);
    expect(JSON.stringify(s)).not.toMatch(/\d\.\d{5,}/);
  });
});
