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
    const { executor, thread, medianMs } = await createExecutor(model, {
      last: split - 1,
      threads: o.threads,
      backend: o.backend,
      thread: o.inferenceThread,
      probe: () => ({ image: { data: new Uint8Array(elementCount(m.input.shape)), dims: [1, ...m.input.shape] } }),
    });
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
