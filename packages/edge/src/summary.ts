import type { EdgeResult } from './path.js';
import { QuantileSketch } from './sketch.js';

/** A run's figures, as the CLIs print them (`--summary`, the demo's table and `--json`). */
export interface Summary {
  frames: number;
  results: number;
  /** Share of labelled frames classified right; null when no frame carries a label. */
  accuracy: number | null;
  /** Frames that did not exit on the edge (answered by the cloud or fallen back), as the dashboards count it. */
  offload_rate: number;
  /** Hard frames the cloud answered. */
  offloaded: number;
  /** Hard frames answered locally after a failed offload. */
  fallbacks: number;
  /** Fallbacks by reason (timeout, no_responders, disconnected, an error code, ...). */
  fallback_reasons: Record<string, number>;
  errors: number;
  operating_point: string;
  exits: { edge: number[]; cloud: number[] };
  /** Mean bytes of the frames that were sent to the cloud (answered or not); 0 when none was sent. */
  bytes_per_offload: number;
  bytes_per_frame: number;
  latency_ms: { edge: Percentiles; offloaded: Percentiles; fallback: Percentiles };
}

export interface Percentiles {
  p50: number | null;
  p99: number | null;
  n: number;
}

/**
 * Running aggregates of results: counters and fixed-size quantile sketches (1 % relative accuracy), so a
 * long-running edge keeps constant memory however many frames it sees.
 */
export class SummaryBuilder {
  private results = 0;
  private labelled = 0;
  private correct = 0;
  private readonly outcomes = { exited: 0, offloaded: 0, fallback: 0, error: 0 };
  private readonly reasons: Record<string, number> = {};
  private readonly exits: { edge: number[]; cloud: number[] };
  private sent = 0;
  private sentBytes = 0;
  private readonly latency = {
    edge: new QuantileSketch(),
    offloaded: new QuantileSketch(),
    fallback: new QuantileSketch(),
  };

  constructor(exits: number) {
    this.exits = { edge: new Array<number>(exits).fill(0), cloud: new Array<number>(exits).fill(0) };
  }

  add(r: EdgeResult): void {
    this.results++;
    if (r.label !== undefined) {
      this.labelled++;
      if (r.class === r.label) this.correct++;
    }
    this.outcomes[r.outcome]++;
    if (r.outcome === 'fallback') {
      const reason = r.fallback_reason ?? 'unknown';
      this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
    }
    if (r.exit >= 0 && r.exit < 64) {
      // A model switched in by a rollout may have more exits than the one the edge started with.
      for (const tier of ['edge', 'cloud'] as const) while (this.exits[tier].length <= r.exit) this.exits[tier].push(0);
      this.exits[r.tier][r.exit]!++;
    }
    if (r.offload_bytes > 0) {
      this.sent++;
      this.sentBytes += r.offload_bytes;
    }
    if (r.outcome === 'exited') this.latency.edge.add(r.latency_ms);
    else if (r.outcome === 'offloaded') this.latency.offloaded.add(r.latency_ms);
    else if (r.outcome === 'fallback') this.latency.fallback.add(r.latency_ms);
  }

  summary(frames: number, operatingPoint: string): Summary {
    const n = this.results;
    const pcts = (s: QuantileSketch): Percentiles => ({
      p50: ms(s.quantile(0.5)),
      p99: ms(s.quantile(0.99)),
      n: s.count,
    });
    return {
      frames,
      results: n,
      accuracy: this.labelled ? ratio(this.correct / this.labelled) : null,
      offload_rate: n ? ratio((n - this.outcomes.exited) / n) : 0,
      offloaded: this.outcomes.offloaded,
      fallbacks: this.outcomes.fallback,
      fallback_reasons: { ...this.reasons },
      errors: this.outcomes.error,
      operating_point: operatingPoint,
      exits: { edge: [...this.exits.edge], cloud: [...this.exits.cloud] },
      bytes_per_offload: this.sent ? Math.round(this.sentBytes / this.sent) : 0,
      bytes_per_frame: n ? Math.round(this.sentBytes / n) : 0,
      latency_ms: {
        edge: pcts(this.latency.edge),
        offloaded: pcts(this.latency.offloaded),
        fallback: pcts(this.latency.fallback),
      },
    };
  }
}

/** Fractions to 4 decimals (0.01 percentage points), latencies to 0.01 ms: what was measured, no float noise. */
const ratio = (x: number) => Math.round(x * 1e4) / 1e4;
const ms = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);

/** The figures of a finished list of results. */
export function summarise(
  results: Iterable<EdgeResult>,
  frames: number,
  operatingPoint: string,
  exits: number,
): Summary {
  const b = new SummaryBuilder(exits);
  for (const r of results) b.add(r);
  return b.summary(frames, operatingPoint);
}

/** The summary as a table for people; `extra` rows are appended in the same columns. */
export function formatSummary(s: Summary, extra: [string, string][] = []): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(2)} %`);
  const lat = (p: Percentiles) => (p.n === 0 ? 'none' : `${p.p50!.toFixed(2)} / ${p.p99!.toFixed(2)} ms (${p.n})`);
  const hist = (h: number[]) =>
    h
      .map((n, i) => (n ? `${i + 1}:${n}` : ''))
      .filter(Boolean)
      .join(' ') || '-';
  const hard = s.offloaded + s.fallbacks;
  const reasons = Object.entries(s.fallback_reasons)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const rows: [string, string][] = [
    ['frames', String(s.frames)],
    ['results', String(s.results)],
    ['accuracy', pct(s.accuracy)],
    ['operating point', s.operating_point],
    [
      'offload rate',
      `${pct(s.offload_rate)} (${hard} hard frames: ${s.offloaded} answered by the cloud, ${s.fallbacks} fell back)`,
    ],
    ['fallbacks', s.fallbacks ? `${s.fallbacks} (${reasons})` : '0'],
    ['errors', String(s.errors)],
    ['exits on edge', hist(s.exits.edge)],
    ['exits in cloud', hist(s.exits.cloud)],
    ['bytes per offload sent', s.bytes_per_offload ? String(s.bytes_per_offload) : 'n/a (nothing sent)'],
    ['bytes per frame', String(s.bytes_per_frame)],
    ['latency exited on edge p50 / p99', lat(s.latency_ms.edge)],
    ['latency answered by cloud p50 / p99', lat(s.latency_ms.offloaded)],
  ];
  if (s.fallbacks) rows.push(['latency fallback p50 / p99', lat(s.latency_ms.fallback)]);
  rows.push(...extra);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}
