// Metrics from a camera site without a connection into it: the site's Prometheus agent (the shipped
// deploy/prometheus/site config) scrapes the site's agent and writes to the cloud's Prometheus, which has no target
// at the site at all. The cloud then has every camera's series, labelled with its site.
import { stopChild, track } from '@cascade/demo';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, MODEL, REPO, until } from './harness.js';
import { startPrometheus, startSiteAgent, type LocalPrometheus } from './prometheus.js';

describe("a site's metrics reach the cloud by remote write", () => {
  const stops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const s of stops.reverse()) await s();
  });

  it("the cloud's Prometheus, with no route to the site, has the site's cameras, labelled site=site-a", async () => {
    const cloud = await startPrometheus({ edge: [], workers: [] }, ['--web.enable-remote-write-receiver']);
    stops.push(() => cloud.stop());
    // One agent at the site with two cameras (the sample video, read at its own rate).
    const metrics = await freePort();
    const video = join(REPO, 'samples/cifar10-test-1000.mp4');
    const agent: ChildProcess = track(
      spawn(process.execPath, [join(REPO, 'packages/edge/dist/cli.js'), '--model', MODEL, '--id', 'site-a.agent-1',
        '--camera', `cam-1=${video}`, '--camera', `cam-2=${video}`, '--metrics-port', String(metrics), '--metrics-host', '127.0.0.1',
        '--outbox-dir', 'memory', '--fleet', 'off', '--threads', '1', '--out', '/dev/null'], { stdio: 'ignore' }), // prettier-ignore
    );
    stops.push(() => stopChild(agent, 'SIGTERM').then(() => undefined));
    const site: LocalPrometheus = await startSiteAgent('site-a', [metrics], cloud.url);
    stops.push(() => site.stop());

    const taken = await until(
      "the site's cameras in the cloud",
      async () => {
        const r = await cloud.query('cascade_camera_frames_taken_total > 0');
        return r.length === 2 ? r : undefined;
      },
      45_000,
      500,
    );
    expect(taken.map((s) => [s.metric.site, s.metric.edge]).sort()).toEqual([
      ['site-a', 'site-a.agent-1.cam-1'],
      ['site-a', 'site-a.agent-1.cam-2'],
    ]);
    // The agent's own series came too; the cloud never scraped the site (no `up` of its own for an edge, only the
    // site agent's, which carries the site label).
    const frames = await cloud.query('sum by (site, edge) (cascade_edge_frames_total)');
    expect(frames.map((s) => s.metric.edge).sort()).toEqual(['site-a.agent-1.cam-1', 'site-a.agent-1.cam-2']);
    expect(await cloud.query('up{job="cascade-edge", site=""}')).toHaveLength(0);
    expect(await cloud.query('up{site="site-a"}')).toHaveLength(1); // the agent's own scrape of the edge, written
  }, 90_000);
});
