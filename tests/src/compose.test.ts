// The compose stack as a user brings it up, for real: deploy/compose/docker-compose.yml with .env.example and the
// test override (tests/compose/docker-compose.test.yml: local stand-ins for the NATS and Prometheus images), through
// podman's Docker-compatible socket (DOCKER_HOST; scripts/test starts it and builds the images with scripts/images).
// The workers come up before NATS and must wait for it; the edge replays the sample video as a camera would; one
// worker is killed and its restart policy brings it back; every frame the edge took has one result in the stream.
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, requireProgram, until } from './harness.js';
import { testPki } from './topology.js';

const run = promisify(execFile);
const DIR = join(REPO, 'deploy/compose');
const PROJECT = `cascade-it-${process.pid}`;
const FILES = ['-f', 'docker-compose.yml', '-f', '../../tests/compose/docker-compose.test.yml'];

function engine(): NodeJS.ProcessEnv {
  if (!process.env.DOCKER_HOST)
    throw new Error(
      'no container engine: run this through scripts/test, which builds the images (scripts/images) and starts ' +
        "podman's API socket (DOCKER_HOST)",
    );
  return process.env;
}

const CLUSTER = `cascade-itc-${process.pid}`;
const CLUSTER_FILES = [
  ...['-f', 'docker-compose.yml', '-f', 'docker-compose.cluster.yml', '-f', 'docker-compose.site.yml'],
  ...['-f', '../../tests/compose/docker-compose.cluster.test.yml'],
];

const composeOf =
  (project: string, files: string[], env: Record<string, string> = {}) =>
  async (...args: string[]) =>
    (
      await run('docker-compose', ['-p', project, ...files, '--env-file', '.env.example', ...args], {
        cwd: DIR,
        env: { ...engine(), ...env },
        maxBuffer: 64 * 1024 * 1024,
      })
    ).stdout;
const compose = composeOf(PROJECT, FILES);
const podman = async (...args: string[]) =>
  (await run('podman', args, { env: engine(), maxBuffer: 16 * 1024 * 1024 })).stdout.trim();
const container = (service: string) => `${PROJECT}_${service}_1`;
const logs = (service: string, c = compose) => c('logs', '--no-color', service);
const frameLines = async (c = compose) =>
  (await logs('edge-agent', c)).split('\n').filter((l) => l.includes('{"frame"'));
const frames = async (c = compose) => (await frameLines(c)).length;

/** What cascade-results --stats says of one edge's results in the stream, read as the monitor role. */
async function streamStats(edge: string): Promise<{ messages: number; unique: number; duplicates: number }> {
  const { stdout } = await run(
    process.execPath,
    [
      join(REPO, 'packages/edge/dist/results-cli.js'),
      ...['--nats', 'nats://127.0.0.1:4222', '--nats-user', 'monitor', '--nats-password', 'change-me-monitor'],
      ...['--nats-inbox-prefix', '_INBOX_monitor', '--edge', edge, '--stats'],
    ],
    { env: process.env },
  );
  return JSON.parse(stdout) as never;
}

/** Nothing of a project is left: no container, volume or network. */
async function nothingLeft(project: string): Promise<void> {
  const label = `label=com.docker.compose.project=${project}`;
  expect(await podman('ps', '-a', '-q', '--filter', label)).toBe('');
  expect(await podman('volume', 'ls', '-q', '--filter', label)).toBe('');
  expect(await podman('network', 'ls', '-q', '--filter', label)).toBe('');
}

async function promQuery(q: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const r = await fetch(`http://127.0.0.1:9090/api/v1/query?query=${encodeURIComponent(q)}`);
  return ((await r.json()) as { data: { result: never[] } }).data.result;
}

afterAll(async () => {
  if (process.env.DOCKER_HOST) await compose('down', '-v', '--remove-orphans').catch(() => undefined);
});

describe('compose - the stack a user brings up, on a container engine', () => {
  it('workers wait for NATS; the edge streams; Prometheus scrapes; a killed worker comes back; every frame has one result; down leaves nothing', async () => {
    requireProgram('docker-compose');
    requireProgram('podman');
    const t0 = performance.now();
    // Workers first, NATS not there yet: they must wait for it, not exit.
    await compose('up', '-d', '--no-deps', 'worker-1', 'worker-2');
    for (const w of ['worker-1', 'worker-2'])
      await until(`${w} waiting for NATS`, async () => (await logs(w)).includes('"worker_waiting_for_nats"'), 60_000);
    await compose('up', '-d', 'nats', 'edge-agent', 'prometheus');
    for (const w of ['worker-1', 'worker-2'])
      await until(`${w} serving`, async () => (await logs(w)).includes('"worker_started"'), 60_000);
    const upAfter = (performance.now() - t0) / 1000;

    // Prometheus scrapes the edge and both workers, and the recording rules have data.
    const scraped = await until(
      'Prometheus scraping the edge and both workers',
      async () => {
        const up = (await promQuery('up == 1')).map((s) => s.metric.instance).sort();
        return ['edge-agent:9465', 'worker-1:9464', 'worker-2:9464'].every((i) => up.includes(i)) && up;
      },
      90_000,
    );
    expect(scraped).toEqual(expect.arrayContaining(['edge-agent:9465', 'worker-1:9464', 'worker-2:9464']));
    const offload = await until(
      'the offload-rate recording rule',
      async () => (await promQuery('cascade:edge_offload_rate:ratio_rate5m')).find((s) => s.metric.edge === 'cam-1'),
      90_000,
    );
    expect(Number(offload.value[1])).toBeGreaterThan(0);

    // The images' users and files: uid 1000, the model read-only to it; the healthchecks pass (podman here does
    // not schedule them itself).
    for (const s of ['worker-1', 'worker-2', 'edge-agent']) {
      expect(await podman('exec', container(s), 'id', '-u')).toBe('1000');
      await expect(podman('exec', container(s), 'touch', '/models/ranet-cifar10/manifest.json')).rejects.toThrow(
        /Permission denied/,
      );
      expect(await podman('healthcheck', 'run', container(s))).toBe('');
    }

    // A worker killed: its restart policy brings it back, and it serves again.
    const before = await frames();
    const pid = await podman('inspect', '-f', '{{.State.Pid}}', container('worker-1'));
    process.kill(Number(pid), 'SIGKILL');
    await until(
      'worker-1 restarted',
      async () =>
        (await podman('inspect', '-f', '{{.RestartCount}} {{.State.Status}}', container('worker-1'))) === '1 running',
      60_000,
    );
    await until(
      'worker-1 ready again',
      async () => (await podman('healthcheck', 'run', container('worker-1'))) === '',
      60_000,
    );
    await until('frames after the restart', async () => (await frames()) > before + 25, 60_000);

    // Every frame the edge took has exactly one result in the stream (the edge drains its outbox on stop).
    await compose('stop', 'edge-agent');
    const taken = await frames();
    const stats = await streamStats('cam-1');
    console.log(
      `compose figures: ${JSON.stringify({ up_s: Math.round(upAfter), frames_in: taken, ...stats, worker_restarts: 1 })}`,
    );
    expect(taken).toBeGreaterThan(100);
    expect(stats).toMatchObject({ messages: taken, unique: taken, duplicates: 0 });
    // Nothing any part of the stack does is refused by the shipped permissions.
    const violations = (await logs('nats')).split('\n').filter((l) => l.includes('Violation'));
    expect(violations.map((l) => l.replace(/^.*? - (?=[A-Z])/, ''))).toEqual([]);

    await compose('down', '-v');
    await nothingLeft(PROJECT);
  }, 420_000);

  it('with the cluster and site overlays: three NATS nodes, a camera behind the site answered by the cloud, every result stored once on three copies', async () => {
    // Routes and leaf links are mutual TLS: a test CA and a certificate for the services' names, mounted read-only.
    const cluster = composeOf(CLUSTER, CLUSTER_FILES, { CASCADE_CERTS_DIR: testPki().dir });
    try {
      await cluster('up', '-d', 'nats', 'nats-2', 'nats-3', 'worker-1', 'worker-2', 'site-a', 'edge-agent');
      // The camera behind the site offloads hard frames to the cloud's workers over the leaf link.
      await until(
        'frames answered in the cloud for the camera behind the site',
        async () => (await frameLines(cluster)).filter((l) => l.includes('"tier":"cloud"')).length >= 10,
        120_000,
      );
      await cluster('stop', 'edge-agent');
      const lines = await frameLines(cluster);
      const stats = await streamStats('site-a.agent-1.cam-1');
      console.log(
        `compose cluster figures: ${JSON.stringify({ frames_in: lines.length, cloud: lines.filter((l) => l.includes('"tier":"cloud"')).length, ...stats })}`,
      );
      expect(lines.every((l) => l.includes('"edge":"site-a.agent-1.cam-1"'))).toBe(true);
      expect(stats).toMatchObject({ messages: lines.length, unique: lines.length, duplicates: 0 });
      // The results stream lives on all three nodes, as the workers were told (CASCADE_RESULTS_REPLICAS=3).
      const nc = await connect({
        servers: '127.0.0.1:4222',
        user: 'monitor',
        pass: 'change-me-monitor',
        inboxPrefix: '_INBOX_monitor',
      });
      const stream = await (await jetstreamManager(nc)).streams.info('CASCADE_RESULTS').finally(() => nc.close());
      expect([stream.config.num_replicas, 1 + (stream.cluster?.replicas?.length ?? 0)]).toEqual([3, 3]);
      const violations = (await logs('nats', cluster)).split('\n').filter((l) => l.includes('Violation'));
      expect(violations).toEqual([]);
    } finally {
      await cluster('down', '-v', '--remove-orphans');
    }
    await nothingLeft(CLUSTER);
  }, 420_000);
});
