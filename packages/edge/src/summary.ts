import type { EdgeResult } from './agent.js';

export interface Summary {
  frames: number;
  results: number;
  accuracy: number | null;
  offload_rate: number;
  fallbacks: number;
  errors: number;
  operating_point: string;
  exits: { edge: number[]; cloud: number[] };
  bytes_per_offload: number;
  bytes_per_frame: number;
  latency_ms: { edge: Percentiles; offloaded: Percentiles };
}

export interface Percentiles {
  p50: number | null;
  p99: number | null;
  n: number;
}

function percentiles(xs: number[]): Percentiles {
  if (xs.length === 0) return { p50: null, p99: null, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
  return { p50: at(0.5), p99: at(0.99), n: s.length };
}

/** The run's figures from its results. Offload rate follows the dashboards: every frame that did not exit on the edge. */
export function summarise(results: EdgeResult[], frames: number, operatingPoint: string, exits: number): Summary {
  const labelled = results.filter((r) => r.label !== undefined);
  const sent = results.filter((r) => r.offload_bytes > 0);
  const hist = (tier: 'edge' | 'cloud') => {
    const h = new Array<number>(exits).fill(0);
    for (const r of results) if (r.tier === tier && r.exit >= 0) h[r.exit]!++;
    return h;
  };
  return {
    frames,
    results: results.length,
    accuracy: labelled.length ? labelled.filter((r) => r.class === r.label).length / labelled.length : null,
    offload_rate: results.length ? results.filter((r) => r.outcome !== 'exited').length / results.length : 0,
    fallbacks: results.filter((r) => r.outcome === 'fallback').length,
    errors: results.filter((r) => r.outcome === 'error').length,
    operating_point: operatingPoint,
    exits: { edge: hist('edge'), cloud: hist('cloud') },
    bytes_per_offload: sent.length ? sent.reduce((a, r) => a + r.offload_bytes, 0) / sent.length : 0,
    bytes_per_frame: results.length ? sent.reduce((a, r) => a + r.offload_bytes, 0) / results.length : 0,
    latency_ms: {
      edge: percentiles(results.filter((r) => r.outcome === 'exited').map((r) => r.latency_ms)),
      offloaded: percentiles(results.filter((r) => r.outcome === 'offloaded').map((r) => r.latency_ms)),
    },
  };
}

/** The summary as a table for people. */
export function formatSummary(s: Summary): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(2)} %`);
  const ms = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(2)} ms`);
  const rows: [string, string][] = [
    ['frames', String(s.frames)],
    ['results', String(s.results)],
    ['accuracy', pct(s.accuracy)],
    ['operating point', s.operating_point],
    ['offload rate', pct(s.offload_rate)],
    ['fallbacks', String(s.fallbacks)],
    ['errors', String(s.errors)],
    ['exits on edge', s.exits.edge.map((n, i) => (n ? `${i + 1}:${n}` : '')).filter(Boolean).join(' ') || '-'],
    ['exits in cloud', s.exits.cloud.map((n, i) => (n ? `${i + 1}:${n}` : '')).filter(Boolean).join(' ') || '-'],
    ['bytes per offload', s.bytes_per_offload.toFixed(0)],
    ['bytes per frame', s.bytes_per_frame.toFixed(0)],
    ['latency edge-exited p50 / p99', `${ms(s.latency_ms.edge.p50)} / ${ms(s.latency_ms.edge.p99)} (${s.latency_ms.edge.n})`],
    ['latency offloaded p50 / p99', `${ms(s.latency_ms.offloaded.p50)} / ${ms(s.latency_ms.offloaded.p99)} (${s.latency_ms.offloaded.n})`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}
