// The edge's adaptation at run time: shadow sampling, the accuracy estimate, and the threshold controller, wired to
// the agent's frames and metrics. The arithmetic is in adaptive.ts.
import type { Manifest } from '@cascade/runtime';
import type { Log } from '@cascade/service';
import { FrameWindow, ShadowWindow, type ShadowRecord } from './adaptive.js';
import {
  BINDINGS,
  chooseMode,
  Controller,
  type Binding,
  type Decision,
  type ModeCosts,
  type ModeWeights,
  type TickInputs,
} from './controller.js';
import type { EdgeViews } from './local.js';
import type { EdgeMetrics } from './metrics.js';
import type { CompiledEdgeOptions } from './options.js';
import type { EdgeResult, ModeChooser } from './path.js';
import type { ExitView, OffloadOutcome } from './request.js';

/** The adaptation's settings: the agent's options of those names, with fleet settings over them. */
export type AdaptSettings = Pick<
  CompiledEdgeOptions,
  'shadowRate' | 'controller' | 'latencyTargetMs' | 'bandwidthBytesPerS' | 'controlStep' | 'minShadowRecords'
> & {
  /** Accuracy the controller may give up against the last exit. */
  accuracyBudget: number;
};

/** Offload failures that say the cloud is short of capacity, not that the link is down. */
const PRESSURE = new Set(['OVERLOADED', 'EXPIRED', 'DRAINING', 'timeout']);
/** Shadow requests in flight at most; more sampled frames are skipped. */
const MAX_SHADOWS = 4;

export class Adaptation {
  readonly shadows: ShadowWindow;
  readonly frames: FrameWindow;
  private controller: Controller | undefined;
  private shadowsInFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private tickStats = emptyTick();
  private latencies: number[] = [];
  private lastTick = performance.now();
  private binding: Binding = 'off';
  /** The last decision (undefined before the first tick with the controller on). */
  last: Decision | undefined;
  /** Bytes per offload in each mode (a moving average), for `--mode auto`. */
  private readonly modeBytes = { state: 0, image: 0 };
  /** The thresholds in force and, for `--mode auto`, the mode chooser: what the frame path decides frames by. */
  readonly policy: { thresholds: readonly number[]; modes?: ModeChooser };
  /** Frames and offloads since the start. */
  readonly totals = { frames: 0, offloads: 0 };
  private readonly recent = { at: { frames: 0, offloads: 0 } };

  /**
   * `base` is the thresholds the operating point (or the fleet configuration) asks for; the controller moves the
   * policy's from there, between frames.
   */
  constructor(
    private readonly manifest: Manifest,
    private readonly edgeExits: number,
    private base: number[],
    private settings: AdaptSettings,
    windowSize: number,
    private readonly metrics: EdgeMetrics,
    private readonly log: Log,
    private readonly sendShadow: ((pixels: Uint8Array) => Promise<OffloadOutcome>) | undefined,
    private readonly random: () => number = Math.random,
  ) {
    this.policy = { thresholds: [...base] };
    this.shadows = new ShadowWindow(windowSize);
    this.frames = new FrameWindow(edgeExits);
    this.apply(settings, base);
  }

  /**
   * Turns on the per-frame mode choice: `macs` is what the cloud computes per offload in each mode (to the last
   * exit), `weights` the cost model's.
   */
  chooseModes(macs: ModeCosts['macs'], weights: ModeWeights): void {
    const b = this.modeBytes;
    this.policy.modes = {
      choose: () => chooseMode({ bytes: b, macs }, weights, this.binding),
      note: (mode, bytes) => (b[mode] = b[mode] ? 0.9 * b[mode] + 0.1 * bytes : bytes),
      seen: (mode) => b[mode] > 0,
    };
  }

  /** Ticks every `intervalMs` until stop(). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  get current(): AdaptSettings {
    return { ...this.settings };
  }

  /** Applies new settings and base thresholds between frames; a controller starts again from the base. */
  apply(settings: AdaptSettings, base = this.base): void {
    const rebase = base.join() !== this.base.join() || !this.controller !== !settings.controller;
    const retune =
      JSON.stringify({ ...settings, shadowRate: 0 }) !== JSON.stringify({ ...this.settings, shadowRate: 0 });
    this.settings = { ...settings };
    this.base = [...base];
    if (rebase || !settings.controller) this.set(base);
    if (!settings.controller) this.controller = undefined;
    else if (rebase || retune || !this.controller) {
      this.controller = new Controller(this.thresholds, this.edgeExits, {
        budget: settings.accuracyBudget,
        latencyTargetMs: settings.latencyTargetMs,
        bandwidthBytesPerS: settings.bandwidthBytesPerS,
        step: settings.controlStep,
        minRecords: settings.minShadowRecords,
        holdTicks: 5,
        floor: [],
      });
    }
    this.metrics.controllerEnabled.set(settings.controller ? 1 : 0);
    this.metrics.accuracyBudget.set(settings.accuracyBudget);
    this.setBinding(settings.controller ? 'no_data' : 'off');
    this.publish();
  }

  /** Counts a frame's edge-exit confidences. */
  frame(views: EdgeViews): void {
    const conf = new Array<number>(this.edgeExits);
    for (let e = 0; e < this.edgeExits; e++) conf[e] = views[e]?.confidence ?? NaN;
    this.frames.add(conf);
  }

  /** Whether this frame is sampled. */
  sample(): boolean {
    return this.settings.shadowRate > 0 && this.random() < this.settings.shadowRate;
  }

  /** Sends a shadow request for a frame that exited at the edge; off the frame's path, never throws. */
  shadow(pixels: Uint8Array): void {
    if (!this.sendShadow) return;
    if (this.shadowsInFlight >= MAX_SHADOWS) {
      this.metrics.shadowRequests.inc({ result: 'skipped' });
      return;
    }
    this.shadowsInFlight++;
    void this.sendShadow(pixels)
      .then((out) => {
        if (out.kind === 'answered' && out.exits) this.record([], out.exits);
        else {
          const refused = out.kind === 'fallback' && out.reason === 'OVERLOADED';
          this.metrics.shadowRequests.inc({ result: refused ? 'refused' : 'failed' });
        }
      })
      .catch(() => this.metrics.shadowRequests.inc({ result: 'failed' }))
      .finally(() => this.shadowsInFlight--);
  }

  /** Records what every exit said: the edge's own exits from `views`, the rest from the cloud's `exits`. */
  record(views: EdgeViews, exits: ExitView[]): void {
    const n = this.manifest.exits.length;
    const k = this.manifest.classes.length;
    const classes = new Array<number>(n).fill(NaN);
    const confidences = new Array<number>(n).fill(NaN);
    const probabilities: ArrayLike<number>[] = new Array<ArrayLike<number>>(n);
    views.forEach((v, e) => {
      if (v) [classes[e], confidences[e], probabilities[e]] = [v.classIndex, v.confidence, v.probabilities];
    });
    for (const v of exits) {
      if (v.exit < 0 || v.exit >= n) continue;
      [classes[v.exit], confidences[v.exit], probabilities[v.exit]] = [v.classIndex, v.confidence, v.probabilities];
    }
    if (classes.some((c) => Number.isNaN(c)) || [...probabilities].some((p) => p?.length !== k)) {
      this.metrics.shadowRequests.inc({ result: 'failed' });
      return;
    }
    const teacher = new Array<number>(k).fill(0);
    for (const p of probabilities) for (let c = 0; c < k; c++) teacher[c]! += p[c]! / n;
    const r: ShadowRecord = { classes, confidences, teacher };
    this.shadows.add(r);
    this.metrics.shadowRequests.inc({ result: 'recorded' });
  }

  /** Counts a result for the next tick. */
  observe(r: EdgeResult): void {
    const t = this.tickStats;
    t.frames++;
    this.totals.frames++;
    if (r.offload_bytes > 0) {
      this.totals.offloads++;
      t.offloads++;
      t.offloadBytes += r.offload_bytes;
      if (r.outcome === 'offloaded') this.latencies.push(r.latency_ms);
    }
    if (r.fallback_reason && PRESSURE.has(r.fallback_reason)) t.pressureFallbacks++;
  }

  /** One control step: the estimate at the thresholds in force, and with the controller on, a move. */
  tick(): Decision | undefined {
    const now = performance.now();
    const t: TickInputs = { ...this.tickStats, seconds: (now - this.lastTick) / 1000 };
    if (this.latencies.length) t.offloadP95Ms = quantile(this.latencies, 0.95);
    this.tickStats = emptyTick();
    this.latencies = [];
    this.lastTick = now;
    let decision: Decision | undefined;
    if (this.controller) {
      decision = this.controller.tick(t, this.shadows, this.frames);
      const before = this.thresholds.join();
      this.set(decision.thresholds);
      if (decision.binding !== this.binding || before !== this.thresholds.join()) {
        if (decision.binding !== this.binding)
          this.log('controller_binding', {
            binding: decision.binding,
            thresholds: this.thresholds.slice(0, this.edgeExits).map((v) => round(v, 4)),
            estimated_loss: round(decision.estimatedLoss, 4),
            offload_cap: round(decision.offloadCap, 4),
            records: decision.records,
          });
        this.setBinding(decision.binding);
      }
      this.last = decision;
      this.metrics.offloadCap.set(decision.offloadCap);
    }
    this.publish();
    return decision;
  }

  /** The binding constraint now ('off' without the controller). */
  get bindingNow(): Binding {
    return this.binding;
  }

  /** Share of frames offloaded since the last call (since the start at the first). */
  recentOffloadRate(): number {
    const r = this.recent;
    const frames = this.totals.frames - r.at.frames;
    const offloads = this.totals.offloads - r.at.offloads;
    r.at = { ...this.totals };
    return frames > 0 ? offloads / frames : 0;
  }

  /** The thresholds in force. */
  get thresholds(): readonly number[] {
    return this.policy.thresholds;
  }

  private set(values: readonly number[]): void {
    this.policy.thresholds = [...values];
  }

  private setBinding(b: Binding): void {
    this.binding = b;
    for (const c of BINDINGS) this.metrics.controllerBinding.set({ constraint: c }, c === b ? 1 : 0);
  }

  /** Thresholds, agreement and the estimate at the thresholds in force, to the metrics. */
  private publish(): void {
    this.thresholds.forEach((v, e) => this.metrics.threshold.set({ exit: String(e) }, v));
    this.metrics.shadowRecords.set(this.shadows.size);
    if (this.shadows.size === 0) return;
    const est = this.shadows.estimate(this.thresholds);
    this.metrics.estimatedLoss.set(est.loss);
    est.agreement.forEach((a, e) => {
      if (Number.isNaN(a)) this.metrics.agreement.remove({ exit: String(e) });
      else this.metrics.agreement.set({ exit: String(e) }, a);
    });
  }
}

function emptyTick(): Omit<TickInputs, 'seconds'> {
  return { frames: 0, offloads: 0, offloadBytes: 0, pressureFallbacks: 0 };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function round(v: number, digits: number): number {
  return Number.isFinite(v) ? Number(v.toFixed(digits)) : v;
}
