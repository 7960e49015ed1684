// Many cameras in one agent process: each camera is an edge agent of its own (its id in results, metrics, the
// registry and the controller), and they share what is costly: one NATS connection, one session per model version,
// one /metrics endpoint. Each camera feeds its agent from its own bounded queue and each agent runs one frame at a
// time in the shared session, so the cameras take turns: a fast or stalled camera cannot starve the others.
import { Camera, CameraMetrics, formatCamera, parseCamera, sameCamera, type CameraSpec } from '@cascade/cameras';
import { CascadeError, clip, configKey, ERROR_CODES, FLEET, parseEdgeSettings } from '@cascade/proto';
import {
  healthRoutes,
  KeyWatch,
  NatsLink,
  serveMetrics,
  stderrLog,
  type Log,
  type MetricsServer,
} from '@cascade/service';
import type { KvWatchEntry } from '@nats-io/kv';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AggregatorRegistry, collectDefaultMetrics, Registry } from 'prom-client';
import { EdgeAgent } from './agent.js';
import { ExecutorPool } from './model.js';
import { compileEdgeOptions, type EdgeOptions } from './options.js';
import type { EdgeResult } from './result.js';

export interface HostOptions {
  /** The agents' options; `id` is the prefix of the cameras' ids (the device, `<site>.<agent>`), if any. */
  edge: EdgeOptions;
  /** No frame for this long: a camera is stalled and reopened. @default 5000 */
  stallMs?: number;
  /** Taken frames waiting per camera (and region). @default 2 */
  queue?: number;
  /** A directory of cameras' passwords, a file named by camera (a mounted secret), read when a camera starts. */
  passwordDir?: string;
  /** What a camera from the fleet takes where it says nothing (the command's --fit, --fps, --roi, --hwaccel). */
  look?: Partial<Omit<CameraSpec, 'id' | 'url'>>;
}

interface Running {
  spec: CameraSpec;
  camera: Camera;
  agent: EdgeAgent;
  done: Promise<void>;
}

export class CameraHost {
  private readonly cameras = new Map<string, Running>();
  private readonly registry = new Registry();
  readonly cameraMetrics = new CameraMetrics(this.registry);
  private readonly executors = new ExecutorPool();
  private metricsServer: MetricsServer | undefined;
  private closed = false;
  /** Resolves when no camera is left (their files ended) and none can be added. */
  private idle: (() => void) | undefined;
  /** The command line's cameras, by id; the fleet's, by camera name (their text); cameras whose file ended. */
  private readonly own = new Map<string, CameraSpec>();
  private readonly fromFleet = new Map<string, string>();
  private readonly ended = new Map<string, string>();
  private watch: KeyWatch | undefined;
  private syncing: Promise<void> = Promise.resolve();

  private constructor(
    private readonly o: HostOptions,
    private readonly link: NatsLink | undefined,
    private readonly onResult: (r: EdgeResult) => void,
    private readonly log: Log,
  ) {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Opens the shared NATS connection and the /metrics endpoint; add cameras with add(). */
  static async create(o: HostOptions, onResult: (r: EdgeResult) => void, log: Log = stderrLog): Promise<CameraHost> {
    const c = compileEdgeOptions({ ...o.edge, id: o.edge.id ?? 'cameras' });
    let link: NatsLink | undefined;
    if (c.nats) {
      // Replies come back to _INBOX.<prefix>.<nuid>: a device's credentials allow its own prefix.
      const inboxPrefix = o.edge.natsAuth?.inboxPrefix ?? (o.edge.id ? `_INBOX.${o.edge.id}` : '_INBOX');
      link = await NatsLink.open({
        servers: c.nats,
        via: c.natsVia,
        name: `cascade-edge ${o.edge.id ?? ''}`.trim(),
        auth: { ...c.natsAuth, inboxPrefix },
        log,
        firstConnect: 'background',
      });
      await link.waitConnected(c.connectWaitMs);
    }
    const host = new CameraHost(o, link, onResult, log);
    if (c.metricsPort >= 0) {
      host.metricsServer = await serveMetrics(
        { contentType: host.registry.contentType, metrics: () => host.metrics() },
        c.metricsPort,
        c.metricsHost,
        healthRoutes({
          alive: () => undefined,
          ready: () => (host.closed ? 'stopping' : link && !link.connected ? 'NATS disconnected' : undefined),
        }),
      );
    }
    log('camera_host_started', { id: o.edge.id ?? null, nats: c.nats ?? null, metrics_port: host.metricsPort ?? null });
    return host;
  }

  /** The full id of a camera: its name under the agent's prefix (`site-a.agent-1` and `cam-1`: site-a.agent-1.cam-1). */
  idOf(name: string): string {
    const prefix = this.o.edge.id;
    if (!prefix || name.startsWith(`${prefix}.`)) return name;
    return `${prefix}.${name}`;
  }

  get ids(): string[] {
    return [...this.cameras.keys()];
  }

  camera(id: string): Camera | undefined {
    return this.cameras.get(this.idOf(id))?.camera;
  }

  agent(id: string): EdgeAgent | undefined {
    return this.cameras.get(this.idOf(id))?.agent;
  }

  /** Every camera's metrics and the process's, as one exposition. */
  async metrics(): Promise<string> {
    const all = [await this.registry.getMetricsAsJSON()];
    for (const r of this.cameras.values()) all.push(await r.agent.metrics.registry.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(all).metrics();
  }

  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /**
   * Watches the agent's cameras in the fleet's settings (`edges.<agent>.<camera>`, setting `camera`): a camera
   * set there starts, a changed one restarts, a removed one stops (a command-line camera of that name comes back),
   * each without touching the others. Needs NATS and the agent's id.
   */
  watchFleet(): boolean {
    const prefix = this.o.edge.id;
    if (!this.link || !prefix || this.watch) return false;
    this.watch = new KeyWatch(this.link, FLEET.configBucket, [`${configKey.edge(prefix)}.*`], (e) => this.take(e), this.log); // prettier-ignore
    this.watch.start();
    return true;
  }

  /** Cameras of the command line: started now (an error is thrown), and kept as the fleet's changes come and go. */
  async start(cameras: CameraSpec[]): Promise<void> {
    for (const c of cameras) {
      this.own.set(this.idOf(c.id), c);
      await this.add(c);
    }
  }

  private take(e: KvWatchEntry): void {
    const name = e.key.slice(configKey.edge(this.o.edge.id!).length + 1);
    let text: string | undefined;
    if (e.operation === 'PUT') {
      try {
        text = parseEdgeSettings(e.string(), e.key).camera;
      } catch (err) {
        this.log('camera_refused', { key: e.key, revision: e.revision, error: clip((err as Error).message, 300) });
        return;
      }
    }
    if (text === undefined) this.fromFleet.delete(name);
    else this.fromFleet.set(name, text);
    this.syncing = this.syncing.then(() => this.sync());
  }

  /** Makes the running cameras what the command line and the fleet say, camera by camera. */
  private async sync(): Promise<void> {
    if (this.closed) return;
    const wanted = new Map(this.own);
    for (const [name, text] of this.fromFleet) {
      try {
        wanted.set(this.idOf(name), parseCamera(name, text, this.o.look));
      } catch (err) {
        this.log('camera_refused', { edge: this.idOf(name), error: clip((err as Error).message, 300) });
      }
    }
    for (const id of [...this.cameras.keys()]) if (!wanted.has(id)) await this.remove(id);
    for (const [id, spec] of wanted) {
      if (this.ended.get(id) === formatCamera(spec)) continue; // its file ended: not again until it changes
      try {
        await this.add(spec);
      } catch (err) {
        this.log('camera_refused', { edge: id, error: clip((err as Error).message, 300) });
      }
    }
  }

  /**
   * Starts a camera: its agent (model, stages from the shared session, outbox, fleet entry) and its decoding. A
   * camera that is already there with the same spec is left alone; with another spec it is restarted.
   */
  async add(spec: CameraSpec): Promise<void> {
    if (this.closed) throw new CascadeError(ERROR_CODES.STATE, 'add() on a camera host that is closing');
    const id = this.idOf(spec.id);
    const old = this.cameras.get(id);
    if (old && sameCamera(old.spec, spec)) return;
    if (old) await this.remove(id);
    const e = this.o.edge;
    const agent = await EdgeAgent.create(
      {
        ...e,
        id,
        metricsPort: -1,
        ...(e.outboxDir && e.outboxDir !== 'memory' ? { outboxDir: join(e.outboxDir, id) } : {}),
      },
      this.log,
      { ...(this.link ? { link: this.link } : {}), executors: this.executors, processMetrics: false },
    );
    const size = agent.model.manifest.input.shape[1]!;
    const password = this.password(spec);
    const camera = new Camera(spec, {
      size,
      edge: id,
      metrics: this.cameraMetrics,
      log: (event, fields) => this.log(event, fields),
      ...(this.o.stallMs ? { stallMs: this.o.stallMs } : {}),
      ...(this.o.queue ? { queue: this.o.queue } : {}),
      ...(password !== undefined ? { password } : {}),
    }).start();
    const running: Running = { spec, camera, agent, done: Promise.resolve() };
    let results = 0;
    running.done = agent
      .run(camera.frames(), (r) => {
        results++;
        this.onResult(r);
      })
      .catch((err: Error) => this.log('camera_error', { edge: id, error: err.message }))
      .then(async () => {
        if (this.cameras.get(id) === running) this.cameras.delete(id);
        if (camera.state === 'ended' || camera.state === 'failed') this.ended.set(id, formatCamera(spec));
        await camera.stop();
        await agent.shutdown();
        this.log('camera_removed', { edge: id, state: camera.state, ...camera.figures, results });
        if (this.cameras.size === 0 && !this.watch) this.idle?.();
      });
    this.cameras.set(id, running);
    this.log('camera_added', { edge: id, source: camera.name, fit: spec.fit, fps: spec.fps, regions: spec.regions.map((r) => r.name) }); // prettier-ignore
  }

  /** A camera's password from the password directory, for an rtsp:// URL that names a user and no password. */
  private password(spec: CameraSpec): string | undefined {
    const dir = this.o.passwordDir;
    if (!dir || !/^rtsps?:\/\/[^/:@]+@/.test(spec.substream ?? spec.url)) return undefined;
    const file = join(dir, spec.id);
    return existsSync(file) ? readFileSync(file, 'utf8').split('\n')[0]!.trim() : undefined;
  }

  /** Stops a camera: its decoding, then its agent, once its frames under way are answered. */
  async remove(name: string): Promise<void> {
    const id = this.idOf(name);
    const r = this.cameras.get(id);
    if (!r) return;
    this.cameras.delete(id);
    await r.camera.stop();
    await r.done;
  }

  /** Resolves once every camera has ended (files at their end) or been removed. */
  whenIdle(): Promise<void> {
    if (this.watch) return new Promise(() => undefined); // the fleet may add cameras at any time
    if (this.cameras.size === 0) return Promise.resolve();
    return new Promise((resolve) => (this.idle = resolve));
  }

  /** Stops every camera, answers what is under way, flushes results, closes NATS and /metrics. */
  async shutdown(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watch?.close();
    await this.syncing;
    await Promise.all([...this.cameras.keys()].map((id) => this.remove(id)));
    await this.link?.close();
    await this.metricsServer?.close();
  }
}
