import { startNatsServer, startWorker, type LocalNats, type WorkerProcess } from '@cascade/demo';
import { EdgeAgent, openSource } from '@cascade/edge';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MODEL, REPO, SAMPLES } from './harness.js';
import { startPrometheus, type LocalPrometheus } from './prometheus.js';

interface Panel {
  title: string;
  targets: { expr: string }[];
}
const DASHBOARDS = join(REPO, 'deploy/grafana/dashboards');
const dashboards = readdirSync(DASHBOARDS).map((f) => ({
  file: f,
  ...(JSON.parse(readFileSync(join(DASHBOARDS, f), 'utf8')) as { panels: Panel[] }),
}));

let nats: LocalNats;
let prom: LocalPrometheus;
const workers: WorkerProcess[] = [];
let agent: EdgeAgent;
// Frames the edge took in during the traffic, and those it sent to the cloud (offloaded or fallen back).
let frames = 0;
let sent = 0;

describe('dashboards - every panel query returns data from a real Prometheus scraping the cascade', () => {
  beforeAll(async () => {
    nats = await startNatsServer();
    for (const id of ['w1', 'w2'])
      workers.push(await startWorker({ model: MODEL, nats: nats.url, id, extra: ['--threads', '1'] }));
    agent = await EdgeAgent.create(
      {
        model: MODEL,
        nats: nats.url,
        id: 'edge-dash',
        threads: 1,
        operatingPoint: 'accurate',
        // The controller on and a high shadow rate, so that its panels have something to show in a 10 s run.
        controller: true,
        shadowRate: 0.2,
        minShadowRecords: 20,
        controlIntervalMs: 500,
        metricsPort: 0,
        metricsHost: '127.0.0.1',
      },
      () => undefined,
    );
    prom = await startPrometheus({ edge: [agent.metricsPort!], workers: workers.map((w) => w.metricsPort!) });
    // Traffic for ~10 s so that rates over a 10 s window have several scrapes.
    const until = Date.now() + 10_000;
    while (Date.now() < until) {
      await agent.run(await openSource(SAMPLES, { size: 32, limit: 200 }), (r) => {
        frames++;
        if (r.outcome !== 'exited') sent++;
      });
    }
    await new Promise((r) => setTimeout(r, 2500)); // one more scrape and rule evaluation
  });

  afterAll(async () => {
    await agent?.shutdown();
    await Promise.all(workers.map((w) => w.stop()));
    await prom?.stop();
    await nats?.stop();
  });

  it('the committed dashboards are what deploy/grafana/dashboards.mjs writes', () => {
    const before = dashboards.map((d) => readFileSync(join(DASHBOARDS, d.file), 'utf8'));
    execFileSync(process.execPath, [join(REPO, 'deploy/grafana/dashboards.mjs')]);
    expect(dashboards.map((d) => readFileSync(join(DASHBOARDS, d.file), 'utf8'))).toEqual(before);
  });

  it('Prometheus scrapes the edge agent and both workers', async () => {
    const up = await prom.query('up');
    expect(
      up
        .filter((s) => s.value[1] === '1')
        .map((s) => s.metric.job)
        .sort(),
    ).toEqual(['cascade-edge', 'cascade-workers', 'cascade-workers']);
  });

  for (const d of dashboards) {
    for (const panel of d.panels) {
      it(`${d.file}: ${panel.title}`, async () => {
        for (const t of panel.targets) {
          const expr = t.expr
            .replaceAll('$__rate_interval', '10s')
            .replaceAll('$edge', '.*')
            .replaceAll('$worker', '.*');
          const result = await prom.query(expr);
          expect(result.length, expr).toBeGreaterThan(0);
          for (const s of result) expect(Number.isNaN(Number(s.value[1])), `${expr} gave NaN`).toBe(false);
        }
      });
    }
  }

  it('recording rules produce the offload rate the edge reports', async () => {
    const rate = await prom.query('cascade:edge_offload_rate:ratio_rate5m{edge="edge-dash"}');
    expect(rate).toHaveLength(1);
    const v = Number(rate[0]!.value[1]);
    // The share of its frames the edge itself sent to the cloud (the controller moves it, so no fixed figure): the
    // rule covers the scraped part of the run, so it agrees to within a few points, not exactly.
    const own = sent / frames;
    console.log(`offload rate: recording rule ${v.toFixed(3)}, the edge's own ${own.toFixed(3)} of ${frames} frames`);
    expect(own).toBeGreaterThan(0);
    expect(Math.abs(v - own), `rule ${v}, edge ${own}`).toBeLessThan(0.05);
  });
});
