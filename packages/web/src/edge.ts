// The browser edge: a model directory loaded over HTTP (every stage checked against the manifest's SHA-256), its
// edge stages run with onnxruntime-web, and each frame taken through the Node edge's own frame path
// (@cascade/edge/path: the same decision, offload and fallback), offloaded over NATS's WebSocket listener.
import { MemoryOutbox, ResultsPump, toFrameResult, type EdgeResult } from '@cascade/edge/delivery';
import { runEdgeStages, type LocalOutcome, type RunStage } from '@cascade/edge/local';
import { FramePath } from '@cascade/edge/path';
import { NatsTransport } from '@cascade/edge/transport';
import { checkManifest, operatingPoint, type Manifest } from '@cascade/runtime/core';
import { jetstream } from '@nats-io/jetstream';
import { wsconnect, type NatsConnection } from '@nats-io/nats-core';
import * as ort from 'onnxruntime-web/wasm';

export interface BrowserEdgeOptions {
  /** An operating point of the model. @default the manifest's default */
  operatingPoint?: string;
}

/** One frame's answer, as the Node edge reports it (and as its FrameResult goes to the results stream). */
export type BrowserResult = EdgeResult;

/** What the page shows of its own work: the last frames' outcomes and latencies. */
export class EdgeStats {
  frames = 0;
  offloaded = 0;
  fallbacks = 0;
  private readonly latencies: number[] = [];
  private readonly started = performance.now();

  constructor(private readonly window = 200) {}

  add(r: BrowserResult): void {
    this.frames++;
    if (r.outcome === 'offloaded') this.offloaded++;
    if (r.outcome === 'fallback') this.fallbacks++;
    this.latencies.push(r.latency_ms);
    if (this.latencies.length > this.window) this.latencies.shift();
  }

  /** Offload rate (offloaded or fallen back: the frames the edge was unsure of), latency p50/p99 of the last frames. */
  summary(): { frames: number; offload_rate: number; fallbacks: number; p50_ms: number; p99_ms: number; fps: number } {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0);
    return {
      frames: this.frames,
      offload_rate: this.frames ? (this.offloaded + this.fallbacks) / this.frames : 0,
      fallbacks: this.fallbacks,
      p50_ms: at(0.5),
      p99_ms: at(0.99),
      fps: (this.frames * 1000) / Math.max(1, performance.now() - this.started),
    };
  }
}

/** How the page reaches the cloud: NATS's WebSocket listener and the edge's login. */
export interface CloudOptions {
  /** ws:// or wss:// URL of a nats-server's websocket listener. */
  url: string;
  /** The edge id: names its requests (and, with the shipped permissions, must match its login). */
  id: string;
  user?: string;
  pass?: string;
  /** Offload deadline. @default 1000 */
  timeoutMs?: number;
}

const hex = (buf: ArrayBuffer) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r;
}

export class BrowserEdge {
  private constructor(
    readonly manifest: Manifest,
    readonly split: number,
    readonly thresholds: number[],
    private readonly sessions: ort.InferenceSession[],
  ) {
    this.path = this.framePath();
  }

  private cloud: { nc: NatsConnection; o: Required<Pick<CloudOptions, 'id' | 'timeoutMs'>> } | undefined;
  /** The frame path: local only until connect(), then offloading to the cloud's workers. */
  private path: FramePath;
  /** Results on their way to the results stream (held in memory while the cloud is away). */
  private results: ResultsPump | undefined;
  /** Names this page's results (with `sequence`): a new one each time the page loads. */
  readonly runId = [...crypto.getRandomValues(new Uint8Array(6))].map((b) => b.toString(16).padStart(2, '0')).join('');
  private sequence = 0;
  readonly stats = new EdgeStats();

  /**
   * Connects to the cloud: from then on hard frames are offloaded (and fall back locally when that fails), and
   * every frame's result goes to the results stream under the edge id, as the Node edge's do.
   */
  async connect(o: CloudOptions): Promise<void> {
    const nc = await wsconnect({
      servers: o.url,
      name: `cascade-web ${o.id}`,
      ...(o.user ? { user: o.user, pass: o.pass ?? '' } : {}),
      inboxPrefix: `_INBOX.${o.id}`,
      maxReconnectAttempts: -1,
    });
    this.cloud = { nc, o: { id: o.id, timeoutMs: o.timeoutMs ?? 1000 } };
    this.path = this.framePath();
    const js = jetstream(nc);
    this.results = new ResultsPump(
      new MemoryOutbox(),
      () => js,
      () => !nc.isClosed(),
      (event, fields) => console.warn(event, fields),
    );
    void (async () => {
      for await (const s of nc.status()) if (s.type === 'reconnect') this.results?.kick();
    })();
  }

  /** Results not yet acknowledged by the results stream. */
  get pendingResults(): number {
    return this.results?.pending ?? 0;
  }

  /** Whether a NATS connection is up now. */
  get connected(): boolean {
    return this.cloud !== undefined && !this.cloud.nc.isClosed();
  }

  /** Sends what results are pending (up to `flushMs`), then closes the connection. */
  async close(flushMs = 2000): Promise<void> {
    await this.results?.flush(flushMs);
    this.results?.close();
    await this.cloud?.nc.close();
    this.cloud = undefined;
    this.results = undefined;
    this.path = this.framePath();
  }

  /**
   * One frame end to end, as the Node edge takes it: the edge stages; a hard frame offloaded to a worker (state
   * mode, int8), or answered by its best local exit when there is no cloud or the offload fails (with the reason).
   */
  async process(pixels: Uint8Array, frame?: string): Promise<BrowserResult> {
    const sequence = ++this.sequence;
    const capturedUnixMs = Date.now();
    const r = await this.path.process({ id: frame ?? `web#${sequence}`, pixels, capturedUnixMs }, sequence);
    this.stats.add(r);
    if (this.results) {
      const { id, subject, data } = toFrameResult(r, this.runId, capturedUnixMs);
      this.results.publish(id, subject, data);
    }
    return r;
  }

  /** The frame path for the cloud connected now (none: every hard frame falls back, `no_cloud`). */
  private framePath(): FramePath {
    const cloud = this.cloud;
    const timeoutMs = cloud?.o.timeoutMs ?? 1000;
    const settings = { edgeId: cloud?.o.id ?? 'web', encoding: 'int8' as const, mode: 'state' as const, timeoutMs, shadowTimeoutMs: timeoutMs }; // prettier-ignore
    const transport = cloud && new NatsTransport(this.manifest, () => (cloud.nc.isClosed() ? undefined : cloud.nc));
    return new FramePath(this.manifest, this.split, settings, this.stage, transport, { thresholds: this.thresholds });
  }

  /** Loads the model at `base` (a URL of a model directory); throws naming what is wrong. */
  static async load(base: string, o: BrowserEdgeOptions = {}): Promise<BrowserEdge> {
    ort.env.wasm.numThreads = 1; // threads need a cross-origin isolated page
    const where = `${base}/manifest.json`;
    const manifest = checkManifest(await (await fetchOk(where)).json(), where);
    const split = manifest.default_split ?? 1;
    const thresholds = [...operatingPoint(manifest, o.operatingPoint).thresholds];
    const sessions: ort.InferenceSession[] = [];
    for (const stage of manifest.stages.slice(0, split)) {
      const bytes = await (await fetchOk(`${base}/${stage.file}`)).arrayBuffer();
      const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
      if (digest !== stage.sha256) throw new Error(`${base}/${stage.file} does not match its sha256 in the manifest`);
      sessions.push(await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'] }));
    }
    return new BrowserEdge(manifest, split, thresholds, sessions);
  }

  /** Runs one edge stage with onnxruntime-web. */
  private readonly stage: RunStage = async (stage, feeds) => {
    const inputs: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds))
      inputs[name] = new ort.Tensor(t.data instanceof Uint8Array ? 'uint8' : 'float32', t.data, t.dims);
    const out = await this.sessions[stage]!.run(inputs);
    return Object.fromEntries(
      Object.entries(out).map(([name, t]) => [name, { data: t.data as Float32Array, dims: [...t.dims] }]),
    );
  };

  /** The edge's decision on one frame (uint8 pixels in the model's input layout), without offloading it. */
  classify(pixels: Uint8Array): Promise<LocalOutcome> {
    return runEdgeStages(this.manifest, this.split, this.thresholds, pixels, this.stage);
  }
}
