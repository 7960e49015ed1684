#!/usr/bin/env node
// Cameras on one agent: what a camera costs (decode and resize in ffmpeg, the edge stages in the agent) at 720p and
// 1080p, taking 5 and 25 frames a second, and how many 720p cameras at 25 frames/s one core serves at `balanced`,
// taking 5 frames a second from each: every camera decoded in real time, every taken frame answered, none dropped.
// The cameras are GStreamer RTSP servers (tests/rtsp/serve.py) sending H.264 files without re-encoding; a worker
// answers the hard frames. Latency is from the agent reading a decoded frame to its result reaching a subscriber of
// the results subject. Writes bench/results/cameras.json and cameras.md. The core is a CPU cgroup (run as root).
import { startNatsServer, startWorker, stopChild, track, type WorkerProcess } from '@cascade/demo';
import { subjects, v1 } from '@cascade/proto';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { connect } from '@nats-io/transport-node';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CpuLimit } from './cgroup.js';
import { percentile, sleep } from './stats.js';

/** A free TCP port on the loopback. */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MODEL = join(REPO, 'models/ranet-cifar10');
const FLAGS = {
  seconds: { type: 'string', help: 'measured seconds per run (default 15)' },
  counts: { type: 'string', help: 'cameras on one core, comma-separated (default 4,8,12,16; stops after the first that fails)' }, // prettier-ignore
  out: { type: 'string', help: 'results folder (default bench/results)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

/** A camera file: `height`p H.264 at 25 frames/s, a keyframe a second, no B-frames (made once, in the temp dir). */
function cameraFile(height: number, seconds: number): string {
  const file = join(tmpdir(), `cascade-bench-cam${height}-${seconds}s.mp4`);
  if (existsSync(file)) return file;
  const width = Math.round((height * 16) / 9);
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-stream_loop', '-1', '-i', join(REPO, 'samples/cifar10-test-1000.mp4'),
    '-t', String(seconds), '-vf', `scale=${width}:${height}:flags=neighbor,fps=25`, '-c:v', 'libx264', '-profile:v', 'main',
    '-g', '25', '-bf', '0', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', file]); // prettier-ignore
  return file;
}

async function startServer(file: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = track(spawn('/usr/bin/python3', [join(REPO, 'tests/rtsp/serve.py'), file], { stdio: ['ignore', 'pipe', 'pipe'] })); // prettier-ignore
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const read = (d: Buffer) => {
      out += d.toString();
      const m = /ready (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    };
    proc.stdout!.on('data', read);
    proc.stderr!.on('data', read);
    proc.once('exit', (code) => reject(new Error(`the RTSP server exited (${code}): ${out}`)));
  });
  return { url: `rtsp://127.0.0.1:${port}/cam`, proc };
}

/** CPU seconds of a process and its children (living ones, and those it has waited for). */
function treeCpuSeconds(pid: number): { agent: number; ffmpeg: number } {
  const stat = (p: number | string) => {
    const s = readFileSync(`/proc/${p}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), own: (Number(f[11]) + Number(f[12])) / 100, waited: (Number(f[13]) + Number(f[14])) / 100 }; // prettier-ignore
  };
  const me = stat(pid);
  let ffmpeg = me.waited;
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const s = stat(p);
      if (s.ppid === pid) ffmpeg += s.own + s.waited;
    } catch {
      // gone meanwhile
    }
  }
  return { agent: me.own, ffmpeg };
}

/** Each camera's decoded and taken counters from the agent's /metrics. */
async function counters(port: number): Promise<Map<string, { decoded: number; taken: number }>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
  const out = new Map<string, { decoded: number; taken: number }>();
  for (const m of text.matchAll(/^cascade_camera_frames_(decoded|taken)_total\{edge="([^"]+)"\} (\d+)/gm)) {
    const c = out.get(m[2]!) ?? { decoded: 0, taken: 0 };
    c[m[1] as 'decoded' | 'taken'] = Number(m[3]);
    out.set(m[2]!, c);
  }
  return out;
}

interface Figures {
  decoded: number;
  taken: number;
  results: number;
  dropped: number;
  missed: number;
  reconnects: number;
}

export interface CameraRun {
  label: string;
  cameras: number;
  height: number;
  take_fps: number;
  /** Cores the agent and its ffmpegs may use; 0: no limit. */
  budget_cores: number;
  seconds: number;
  /** Per camera, over the measured window. */
  decoded_fps: { mean: number; min: number };
  taken_fps: { mean: number; min: number };
  /** Cores used, agent (edge stages, NATS, results) and ffmpeg (decode, resize), per camera. */
  cores_per_camera: { agent: number; ffmpeg: number; total: number };
  /** Over the whole run, all cameras. */
  taken: number;
  answered: number;
  dropped: number;
  offload_rate: number;
  latency_ms: { p50: number; p99: number };
  served: boolean;
}

async function runOnce(
  label: string,
  urls: string[],
  o: { height: number; takeFps: number; seconds: number; nats: string; budget: number; limit?: CpuLimit },
): Promise<CameraRun> {
  const prefix = `bench-${process.pid}-${label.replace(/[^\w-]/g, '-')}`;
  const port = await freePort();
  const nc = await connect({ servers: o.nats });
  const latency: number[] = [];
  let offloaded = 0;
  let stored = 0;
  nc.subscribe(subjects.results(`${prefix}.>`), {
    callback: (_e, m) => {
      const r = v1.FrameResult.decode(m.data);
      latency.push(Date.now() - Number(r.capturedUnixMs));
      if (r.tier === 'cloud') offloaded++;
      stored++;
    },
  });
  await nc.flush();
  const args = [join(REPO, 'packages/edge/dist/cli.js'), '--model', MODEL, '--nats', o.nats, '--id', prefix,
    '--operating-point', 'balanced', '--fps', String(o.takeFps), '--threads', '1', '--metrics-port', String(port), '--metrics-host', '127.0.0.1',
    '--outbox-dir', 'memory', '--fleet', 'off', '--out', '/dev/null',
    ...urls.flatMap((u, i) => ['--camera', `cam-${i + 1}=${u}`])]; // prettier-ignore
  const agent = track(spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
  if (o.limit) {
    o.limit.set(o.budget);
    o.limit.add(agent.pid!);
  }
  let log = '';
  agent.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const events = () => log.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { event: string; edge?: string } & Figures); // prettier-ignore
  const warm = performance.now() + 60_000;
  while (events().filter((e) => e.event === 'camera_up').length < urls.length) {
    if (performance.now() > warm) throw new Error(`${label}: the cameras did not all come up in 60 s:\n${log.slice(-2000)}`); // prettier-ignore
    await sleep(200);
  }
  await sleep(3000); // past the start
  const cpu0 = treeCpuSeconds(agent.pid!);
  const c0 = await counters(port);
  const t0 = performance.now();
  const mark0 = stored;
  await sleep(o.seconds * 1000);
  const cpu1 = treeCpuSeconds(agent.pid!);
  const c1 = await counters(port);
  const window = (performance.now() - t0) / 1000;
  const counted = stored - mark0;
  await stopChild(agent, 'SIGTERM');
  await nc.drain();
  const removed = events().filter((e) => e.event === 'camera_removed');
  const sum = (k: keyof Figures) => removed.reduce((n, e) => n + e[k], 0);
  const perCam = (k: 'decoded' | 'taken') => [...c1].map(([edge, c]) => (c[k] - (c0.get(edge)?.[k] ?? 0)) / window);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const agentCores = (cpu1.agent - cpu0.agent) / window;
  const ffmpegCores = (cpu1.ffmpeg - cpu0.ffmpeg) / window;
  const decoded = perCam('decoded');
  const taken = perCam('taken');
  const r: CameraRun = {
    label,
    cameras: urls.length,
    height: o.height,
    take_fps: o.takeFps,
    budget_cores: o.budget,
    seconds: Math.round(window * 10) / 10,
    decoded_fps: { mean: mean(decoded), min: Math.min(...decoded) },
    taken_fps: { mean: mean(taken), min: Math.min(...taken) },
    cores_per_camera: { agent: agentCores / urls.length, ffmpeg: ffmpegCores / urls.length, total: (agentCores + ffmpegCores) / urls.length }, // prettier-ignore
    taken: sum('taken'),
    answered: sum('results'),
    dropped: sum('dropped'),
    offload_rate: stored ? offloaded / stored : 0,
    latency_ms: { p50: percentile(latency, 0.5), p99: percentile(latency, 0.99) },
    served: false,
  };
  r.served = r.decoded_fps.min >= 25 * 0.95 && r.dropped === 0 && r.answered === r.taken && counted > 0;
  return r;
}

async function main(): Promise<void> {
  const f = parseFlags(FLAGS, process.argv.slice(2));
  if (f.help) return void process.stdout.write(usage('scripts/bench cameras [options]', FLAGS));
  const seconds = Number(f.seconds ?? 15);
  const counts = (f.counts ?? '4,8,12,16').split(',').map(Number);
  const out = f.out ?? join(REPO, 'bench/results');
  const length = seconds + 40; // longer than any run: the server sends the file once per session
  const files = { 720: cameraFile(720, length), 1080: cameraFile(1080, length) };
  const nats = await startNatsServer();
  const workers: WorkerProcess[] = [];
  for (const id of ['w-bench-cams-1', 'w-bench-cams-2'])
    workers.push(await startWorker({ model: MODEL, nats: nats.url, id, extra: ['--threads', '1'] }));
  const servers: { proc: ChildProcess }[] = [];
  const serve = async (file: string, n: number) => {
    const started = await Promise.all(Array.from({ length: n }, () => startServer(file)));
    servers.push(...started);
    return started.map((s) => s.url);
  };
  const runs: CameraRun[] = [];
  const limit = CpuLimit.create(`cascade-bench-cameras-${process.pid}`);
  try {
    // What one camera costs, unlimited.
    for (const height of [720, 1080] as const) {
      const [url] = await serve(files[height], 1);
      for (const takeFps of [5, 25]) {
        const r = await runOnce(`${height}p-${takeFps}fps`, [url!], { height, takeFps, seconds, nats: nats.url, budget: 0 }); // prettier-ignore
        runs.push(r);
        console.error(`one ${height}p camera, ${takeFps} frames/s taken: ${(r.cores_per_camera.total * 100).toFixed(1)} % of a core (ffmpeg ${(r.cores_per_camera.ffmpeg * 100).toFixed(1)} %, agent ${(r.cores_per_camera.agent * 100).toFixed(1)} %), latency p50 ${r.latency_ms.p50.toFixed(0)} ms`); // prettier-ignore
      }
    }
    // How many 720p cameras one core serves, 5 frames/s taken from each.
    const urls720 = await serve(files[720], Math.max(...counts));
    for (const n of counts) {
      const r = await runOnce(`1core-${n}cams`, urls720.slice(0, n), { height: 720, takeFps: 5, seconds, nats: nats.url, budget: 1, limit }); // prettier-ignore
      runs.push(r);
      console.error(`${n} cameras on one core: decoded ${r.decoded_fps.min.toFixed(1)}-${r.decoded_fps.mean.toFixed(1)} frames/s, ${r.answered}/${r.taken} answered, ${r.dropped} dropped, latency p50 ${r.latency_ms.p50.toFixed(0)} / p99 ${r.latency_ms.p99.toFixed(0)} ms: ${r.served ? 'served' : 'NOT served'}`); // prettier-ignore
      if (!r.served) break;
    }
  } finally {
    for (const s of servers) await stopChild(s.proc, 'SIGKILL');
    for (const w of workers) await w.stop();
    await nats.stop();
    limit.remove();
  }
  const machine = `${cpus()[0]?.model ?? 'unknown'} (${cpus().length} cores), Node ${process.version}, ffmpeg ${execFileSync('ffmpeg', ['-version']).toString().split(' ')[2]}`; // prettier-ignore
  const result = { date: new Date().toISOString().slice(0, 10), machine, seconds, runs };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'cameras.json'), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(out, 'cameras.md'), report(result));
  process.stdout.write(report(result));
}

function report(r: { date: string; machine: string; seconds: number; runs: CameraRun[] }): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  const pct = (x: number) => `${f(x * 100)} %`;
  const one = r.runs.filter((x) => x.budget_cores === 0);
  const many = r.runs.filter((x) => x.budget_cores > 0);
  const best = many.filter((x) => x.served).at(-1);
  return [
    '# Cameras on one agent',
    '',
    `${r.date}, ${r.machine}. Cameras: GStreamer RTSP servers on the same machine sending H.264 (main profile, 25 frames/s, a keyframe a second) without re-encoding. One \`cascade-edge\` with \`--camera\` per camera, \`balanced\`, 1 inference thread; two cloud workers and nats-server, unlimited. CPU is the agent's and its ffmpegs' (from /proc) over ${r.seconds} s after the cameras came up; latency is from the agent reading a decoded frame to its result reaching a subscriber of the results subject (RTSP transport and decoding before that are not in it). One run each.`, // prettier-ignore
    '',
    '## What one camera costs (no CPU limit)',
    '',
    '| camera | taken | decoded frames/s | CPU: ffmpeg (decode, resize) | CPU: agent (edge stages, NATS) | CPU total | latency p50 / p99 | offloaded |',
    '|---|---|---|---|---|---|---|---|',
    ...one.map((x) => `| ${x.height}p, 25 frames/s | ${x.take_fps} frames/s | ${f(x.decoded_fps.mean)} | ${pct(x.cores_per_camera.ffmpeg)} of a core | ${pct(x.cores_per_camera.agent)} | ${pct(x.cores_per_camera.total)} | ${f(x.latency_ms.p50, 0)} / ${f(x.latency_ms.p99, 0)} ms | ${pct(x.offload_rate)} |`), // prettier-ignore
    '',
    '## 720p cameras on one core (CPU cgroup of 1 core), 5 frames/s taken from each',
    '',
    'Served: every camera decoded at 95 % of its 25 frames/s or more, every taken frame answered, none dropped.',
    '',
    '| cameras | decoded frames/s per camera (min / mean) | taken frames/s (min) | answered / taken | dropped | CPU per camera | latency p50 / p99 | served |',
    '|---|---|---|---|---|---|---|---|',
    ...many.map((x) => `| ${x.cameras} | ${f(x.decoded_fps.min)} / ${f(x.decoded_fps.mean)} | ${f(x.taken_fps.min, 2)} | ${x.answered} / ${x.taken} | ${x.dropped} | ${pct(x.cores_per_camera.total)} of a core | ${f(x.latency_ms.p50, 0)} / ${f(x.latency_ms.p99, 0)} ms | ${x.served ? 'yes' : '**no**'} |`), // prettier-ignore
    '',
    best
      ? `One core served ${best.cameras} cameras (the most tried that passed).`
      : 'One core served none of the counts tried.',
    '',
  ].join('\n');
}

void main();
