// One model version as the Node edge runs it: its edge stages in their own inference thread, the frame path over
// NATS, and the adaptation that owns the thresholds; and the fleet settings that choose its operating point.
import { ConfigError, EDGE_LIVE_OPTIONS, elementCount, liveOptions, type EdgeSettings } from '@cascade/proto';
import { compressTensor } from '@cascade/proto/compress';
import {
  createExecutor,
  operatingPoint,
  type Manifest,
  type ModelDir,
  type OperatingPoint,
  type StageExecutor,
} from '@cascade/runtime';
import type { Log, NatsLink } from '@cascade/service';
import { Adaptation, type AdaptSettings } from './adapt.js';
import type { RunStage } from './local.js';
import type { EdgeMetrics } from './metrics.js';
import type { CompiledEdgeOptions } from './options.js';
import { FramePath, type FrameObserver } from './path.js';
import type { RequestSettings } from './request.js';
import { NatsTransport } from './transport.js';

/** What every model version of one agent shares. */
export interface EdgeEnv {
  o: CompiledEdgeOptions;
  metrics: EdgeMetrics;
  log: Log;
  link: NatsLink | undefined;
  /** Told after each offload whether a worker answered (or the cloud was unreachable). */
  reachable: (up: boolean) => void;
  /** Stage sessions shared with the other agents of the process (its other cameras); none: the agent's own. */
  executors?: ExecutorPool;
}

type Made = Awaited<ReturnType<typeof createExecutor>>;

/**
 * The edge stages' sessions of one process, shared by its agents (one per camera): one session per model version,
 * split and runtime settings, opened by the first agent that needs it and closed after the last lets it go.
 */
export class ExecutorPool {
  private readonly entries = new Map<string, { made: Promise<Made>; users: number }>();

  async acquire(model: ModelDir, options: Parameters<typeof createExecutor>[1]): Promise<Made> {
    const m = model.manifest;
    const key = JSON.stringify([m.name, m.version, options.last, options.threads, options.backend, options.thread]);
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { made: createExecutor(model, options), users: 0 };
      this.entries.set(key, entry);
      entry.made.catch(() => this.entries.delete(key));
    }
    const e = entry;
    e.users++; // before the wait: a release meanwhile must not close it under this user
    let made: Made;
    try {
      made = await e.made;
    } catch (err) {
      e.users--;
      throw err;
    }
    let released = false;
    const executor: StageExecutor = {
      run: (stage, feeds) => made.executor.run(stage, feeds),
      close: async () => {
        if (released) return;
        released = true;
        if (--e.users === 0) {
          this.entries.delete(key);
          await made.executor.close();
        }
      },
    };
    return { ...made, executor };
  }
}

/** What a request says besides the frame, from the agent's options (Brotli packing when asked for). */
export function requestSettings(o: CompiledEdgeOptions): RequestSettings {
  return {
    edgeId: o.id,
    encoding: o.encoding,
    stateBits: o.stateBits,
    mode: o.mode,
    timeoutMs: o.timeoutMs,
    shadowTimeoutMs: o.shadowTimeoutMs,
    ...(o.compression === 'brotli' ? { pack: compressTensor } : {}),
  };
}

export class EdgeModel {
  readonly path: FramePath;
  readonly adapt: Adaptation;
  operatingPointName: string;
  /** Frames under way on this version. */
  active = 0;
  private drainWaiters: (() => void)[] = [];

  private constructor(
    readonly model: ModelDir,
    readonly split: number,
    private readonly runner: StageExecutor,
    readonly thread: 'inline' | 'worker',
    readonly medianMs: number | undefined,
    point: FleetPoint,
    private readonly env: EdgeEnv,
  ) {
    const { o, metrics, log, link } = env;
    const m = model.manifest;
    const edgeExits = m.stages.slice(0, split).reduce((n, s) => n + s.exits.length, 0);
    const shadow = link ? (pixels: Uint8Array) => this.path.shadow(pixels) : undefined;
    const adapt = new Adaptation(m, edgeExits, point.base, point.settings, o.shadowWindow, metrics, log, shadow);
    this.adapt = adapt;
    if (o.mode === 'auto') {
      const cloud = (first: number) => m.stages.slice(first).reduce((n, s) => n + s.macs, 0);
      adapt.chooseModes({ state: cloud(split), image: cloud(0) }, { bytesPerKB: o.bytesWeight, perMMAC: o.computeWeight }); // prettier-ignore
    }
    const run: RunStage = async (s, feeds) => {
      const { outputs, computeMs } = await runner.run(s, feeds);
      metrics.stageSeconds.observe({ stage: String(s) }, computeMs / 1000);
      return outputs;
    };
    const observer: FrameObserver = {
      views: (views) => adapt.frame(views),
      sample: () => adapt.sample(),
      shadow: (pixels) => adapt.shadow(pixels),
      mode: (mode) => metrics.offloadModes.inc({ mode }),
      offloaded: (out, seconds, frame) => {
        metrics.offloaded(out, seconds);
        if (out.kind === 'answered') env.reachable(true);
        else if (out.reason === 'timeout' || out.reason === 'no_responders' || out.reason === 'disconnected')
          env.reachable(false);
        if (out.kind === 'fallback' && out.reason === 'too_large')
          log('offload_too_large', { frame: frame.id, detail: out.detail });
      },
      cloudExits: (views, exits) => adapt.record(views, exits),
      result: (r) => {
        metrics.result(r);
        adapt.observe(r);
      },
      failed: (frame, err) => log('frame_error', { frame: frame.id, error: err.message }),
    };
    const transport = link && new NatsTransport(m, () => (link.connected ? link.nc : undefined));
    this.path = new FramePath(m, split, requestSettings(o), run, transport, adapt.policy, observer);
    this.operatingPointName = point.op?.name ?? 'custom';
    metrics.expectedOffloadRate.set(promisedOffloadRate(m, point.op, split, point.settings.controller));
  }

  /** Starts the model's edge stages and checks the options and `settings` against it. */
  static async load(model: ModelDir, settings: EdgeSettings, env: EdgeEnv): Promise<EdgeModel> {
    const { o } = env;
    const m = model.manifest;
    const split = o.split ?? m.default_split ?? 1;
    if (split > m.stages.length) throw new ConfigError(`split ${split}: the model has ${m.stages.length} stages`);
    const point = fleetPoint(m, o, settings); // settings that do not fit the model fail here, before the stages start
    const sessions: Parameters<typeof createExecutor>[1] = {
      last: split - 1,
      threads: o.threads,
      backend: o.backend,
      thread: o.inferenceThread,
      probe: () => ({ image: { data: new Uint8Array(elementCount(m.input.shape)), dims: [1, ...m.input.shape] } }),
    };
    const { executor, thread, medianMs } = env.executors
      ? await env.executors.acquire(model, sessions)
      : await createExecutor(model, sessions);
    try {
      return new EdgeModel(model, split, executor, thread, medianMs, point, env);
    } catch (err) {
      await executor.close();
      throw err;
    }
  }

  /** Applies fleet settings over the options; throws a ConfigError, changing nothing, when they do not fit. */
  apply(s: EdgeSettings): void {
    const m = this.model.manifest;
    const { op, base, settings } = fleetPoint(m, this.env.o, s);
    this.adapt.apply(settings, base);
    this.operatingPointName = op?.name ?? 'custom';
    this.env.metrics.expectedOffloadRate.set(promisedOffloadRate(m, op, this.split, settings.controller));
  }

  start(): void {
    this.adapt.start(this.env.o.controlIntervalMs);
  }

  /** A frame finished. */
  done(): void {
    if (--this.active === 0) for (const w of this.drainWaiters.splice(0)) w();
  }

  /** Resolves once no frame is under way on this version. */
  drained(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.adapt.stop();
    await this.runner.close();
  }
}

/** What fleet settings over the command's options make of a model: its operating point, thresholds, adaptation. */
interface FleetPoint {
  /** None for custom thresholds. */
  op: OperatingPoint | undefined;
  base: number[];
  settings: AdaptSettings;
}

/** Accuracy the controller may give up when neither the options nor the operating point say. */
const DEFAULT_BUDGET = 0.005;

const LIVE = liveOptions(EDGE_LIVE_OPTIONS);

/**
 * The operating point (none for thresholds), its thresholds and the adaptation's settings (the controller's budget
 * included), from the fleet settings `s` over the command's options. Throws a ConfigError when the point is not the
 * model's or the thresholds do not fit.
 */
function fleetPoint(m: Manifest, o: CompiledEdgeOptions, s: EdgeSettings): FleetPoint {
  const custom = s.thresholds ?? (s.operating_point ? undefined : o.thresholds);
  const op = custom ? undefined : operatingPoint(m, s.operating_point ?? o.operatingPoint);
  const base = custom ?? op!.thresholds;
  if (base.length !== m.exits.length)
    throw new ConfigError(`thresholds: ${m.exits.length} needed (one per exit), got ${base.length}`);
  // Each fleet setting over the option it sets (EDGE_LIVE_OPTIONS names both).
  const live: Record<string, unknown> = { ...o };
  for (const [setting, { option }] of Object.entries(LIVE)) {
    const v = s[setting as keyof EdgeSettings];
    if (v !== undefined) live[option] = v;
  }
  const x = live as CompiledEdgeOptions;
  const settings: AdaptSettings = {
    shadowRate: x.shadowRate,
    controller: x.controller,
    latencyTargetMs: x.latencyTargetMs,
    bandwidthBytesPerS: x.bandwidthBytesPerS,
    controlStep: x.controlStep,
    minShadowRecords: x.minShadowRecords,
    accuracyBudget: x.accuracyBudget ?? op?.max_drop ?? DEFAULT_BUDGET,
  };
  return { op, base, settings };
}

/**
 * The offload rate the operating point promised on the test set, the centre of the alerting band; -1 for custom
 * thresholds, another split, or the controller on (the thresholds are then its own; its panel watches the rate).
 */
function promisedOffloadRate(m: Manifest, op: OperatingPoint | undefined, split: number, controller: boolean): number {
  return op?.test && split === (m.default_split ?? 1) && !controller ? 1 - op.test.edge_exit_rate : -1;
}
