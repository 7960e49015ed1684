import type { Route } from '@cascade/service';
import type { Registry } from 'prom-client';

/** What the live view shows, computed from the agent's own metrics. */
export interface LiveSummary {
  edge: string;
  frames: number;
  outcomes: Record<string, number>;
  offload_rate: number | null;
  frames_per_second: number;
  exits: { exit: number; tier: string; count: number }[];
  latency_ms: Record<string, { p50: number | null; p99: number | null }>;
  cloud_reachable: boolean;
}

interface MetricJson {
  name: string;
  values: { value: number; labels: Record<string, string | number>; metricName?: string }[];
}

/** A quantile from cumulative histogram buckets (linear inside the bucket, as Prometheus does). */
export function quantile(buckets: { le: number; count: number }[], q: number): number | null {
  const total = buckets.at(-1)?.count ?? 0;
  if (total === 0) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of buckets) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      return prevLe + ((b.le - prevLe) * (rank - prevCount)) / Math.max(1, b.count - prevCount);
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** Routes `/` (the page) and `/live.json` (its data) for an edge agent's metrics server. */
export function liveRoutes(registry: Registry, edge: string): Record<string, Route> {
  const history: { t: number; frames: number }[] = [];
  const summary = async (): Promise<LiveSummary> => {
    const metrics = (await registry.getMetricsAsJSON()) as unknown as MetricJson[];
    const get = (name: string) => metrics.find((m) => m.name === name)?.values ?? [];
    const outcomes: Record<string, number> = {};
    for (const v of get('cascade_edge_frames_total')) {
      const outcome = String(v.labels.outcome);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + v.value; // summed over model versions
    }
    const frames = Object.values(outcomes).reduce((a, b) => a + b, 0);
    const now = Date.now();
    history.push({ t: now, frames });
    while (history.length > 2 && now - history[0]!.t > 5000) history.shift();
    const first = history[0]!;
    const latency: LiveSummary['latency_ms'] = {};
    for (const outcome of ['exited', 'offloaded', 'fallback']) {
      const buckets = get('cascade_edge_frame_seconds')
        .filter((v) => v.metricName === 'cascade_edge_frame_seconds_bucket' && v.labels.outcome === outcome)
        .map((v) => ({ le: v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), count: v.value }))
        .sort((a, b) => a.le - b.le);
      const ms = (x: number | null) => (x === null ? null : x * 1000);
      latency[outcome] = { p50: ms(quantile(buckets, 0.5)), p99: ms(quantile(buckets, 0.99)) };
    }
    return {
      edge,
      frames,
      outcomes,
      offload_rate: frames ? (frames - (outcomes.exited ?? 0)) / frames : null,
      frames_per_second: now > first.t ? ((frames - first.frames) * 1000) / (now - first.t) : 0,
      exits: get('cascade_exit_total')
        .map((v) => ({ exit: Number(v.labels.exit), tier: String(v.labels.tier), count: v.value }))
        .sort((a, b) => a.exit - b.exit),
      latency_ms: latency,
      cloud_reachable: (get('cascade_cloud_reachable')[0]?.value ?? 0) === 1,
    };
  };
  return {
    '/': async () => ({ status: 200, type: 'text/html; charset=utf-8', body: PAGE }),
    '/live.json': async () => ({ status: 200, type: 'application/json', body: JSON.stringify(await summary()) }),
  };
}

const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cascade live</title>
<style>
body { font: 15px system-ui, sans-serif; margin: 24px; color: #1d2430; background: #f6f7f9; }
h1 { font-size: 20px; margin: 0 0 16px; } .muted { color: #6b7280; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 20px; }
.card { background: #fff; border-radius: 8px; padding: 12px 16px; min-width: 150px; box-shadow: 0 1px 2px #0002; }
.card .v { font-size: 28px; font-weight: 600; } .card .k { color: #6b7280; font-size: 13px; }
.bars { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; max-width: 640px; }
.row { display: flex; align-items: center; gap: 8px; margin: 4px 0; } .row .l { width: 130px; }
.bar { height: 16px; border-radius: 3px; } .edge { background: #3b82f6; } .cloud { background: #f59e0b; }
table { border-collapse: collapse; margin-top: 20px; background: #fff; } td, th { padding: 6px 12px; border-bottom: 1px solid #e5e7eb; text-align: right; }
</style></head>
<body>
<h1>Cascade live view <span class="muted" id="edge"></span></h1>
<div class="cards">
  <div class="card"><div class="v" id="offload">–</div><div class="k">offload rate</div></div>
  <div class="card"><div class="v" id="frames">–</div><div class="k">frames</div></div>
  <div class="card"><div class="v" id="fps">–</div><div class="k">frames / s</div></div>
  <div class="card"><div class="v" id="fallbacks">–</div><div class="k">fallbacks</div></div>
  <div class="card"><div class="v" id="cloud">–</div><div class="k">cloud</div></div>
</div>
<div class="bars"><b>Answers per exit</b><div id="exits"></div></div>
<table><thead><tr><th></th><th>p50</th><th>p99</th></tr></thead><tbody id="latency"></tbody></table>
<p class="muted" id="updated"></p>
<script>
const fmt = (x, d = 1) => x === null || x === undefined ? '–' : x.toFixed(d);
async function tick() {
  try {
    const s = await (await fetch('live.json')).json();
    document.getElementById('edge').textContent = s.edge;
    document.getElementById('offload').textContent = s.offload_rate === null ? '–' : fmt(s.offload_rate * 100) + ' %';
    document.getElementById('frames').textContent = s.frames;
    document.getElementById('fps').textContent = fmt(s.frames_per_second, 0);
    document.getElementById('fallbacks').textContent = s.outcomes.fallback ?? 0;
    document.getElementById('cloud').textContent = s.cloud_reachable ? 'reachable' : 'unreachable';
    const max = Math.max(1, ...s.exits.map(e => e.count));
    document.getElementById('exits').innerHTML = s.exits.map(e =>
      '<div class="row"><span class="l">exit ' + (e.exit + 1) + ' (' + e.tier + ')</span><span class="bar ' + e.tier +
      '" style="width:' + Math.round(400 * e.count / max) + 'px"></span><span>' + e.count + '</span></div>').join('');
    document.getElementById('latency').innerHTML = Object.entries(s.latency_ms).map(([k, v]) =>
      '<tr><th>' + k + ' (ms)</th><td>' + fmt(v.p50, 2) + '</td><td>' + fmt(v.p99, 2) + '</td></tr>').join('');
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.dataset.frames = s.frames;
  } catch (err) {
    document.getElementById('updated').textContent = 'metrics unavailable: ' + err;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body></html>
`;
