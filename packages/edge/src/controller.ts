// The threshold controller: moves the edge's thresholds, one bounded step a tick, to hold the estimated accuracy
// loss within budget at the lowest offload rate, and caps offloading while the cloud is under pressure or the link
// over its bandwidth budget; and the per-frame choice of offload mode. No Node or NATS here: plain arithmetic.
import type { FrameWindow, ShadowWindow } from './adaptive.js';

/** What keeps the controller from offloading less, or from offloading as much as accuracy asks. */
export const BINDINGS = ['off', 'none', 'no_data', 'accuracy', 'cloud_pressure', 'bandwidth'] as const;
export type Binding = (typeof BINDINGS)[number];

export interface ControlSettings {
  /** Accuracy the cascade may give up against the last exit (0.005 = 0.5 points): the operating point's max_drop. */
  budget: number;
  /** Offload latency (p95 over a tick) above which the cloud counts as under pressure; 0: not watched. */
  latencyTargetMs: number;
  /** Offload bytes per second the edge may send; 0: no limit. */
  bandwidthBytesPerS: number;
  /** Largest move of one threshold in one tick. */
  step: number;
  /** Shadow records needed before accuracy moves a threshold. */
  minRecords: number;
  /** Ticks without pressure before the offload cap is raised again. */
  holdTicks: number;
  /** Thresholds never go below these (one per exit; missing: 0); lower means more frames leave early. */
  floor: number[];
}

/** What happened in the last tick, from the edge's counters. */
export interface TickInputs {
  seconds: number;
  frames: number;
  /** Offload requests sent (answered or not). */
  offloads: number;
  offloadBytes: number;
  /** Offloads that failed for the cloud's sake: OVERLOADED, EXPIRED, DRAINING, timeout. */
  pressureFallbacks: number;
  /** p95 of the tick's offload round trips, when there were any. */
  offloadP95Ms?: number;
}

export interface Decision {
  /** Thresholds of every exit. */
  thresholds: number[];
  binding: Binding;
  /** Estimated accuracy loss against the last exit under the new thresholds (NaN without records). */
  estimatedLoss: number;
  /** Offload rate the frame window predicts under the new thresholds. */
  estimatedOffloadRate: number;
  /** Largest offload rate pressure and bandwidth allow now (1: no cap). */
  offloadCap: number;
  records: number;
}

/** Candidate moves of one threshold, as shares of the step. */
const MOVES = [-1, -0.5, -0.25, 0, 0.25, 0.5, 1];
/** Highest a threshold goes: above every confidence, so the exit never fires. */
const NEVER = 1.0001;

/**
 * Keeps the estimated loss within budget at the lowest offload rate, sheds load when the cloud is under pressure
 * (multiplicative decrease of an offload cap, raised again after `holdTicks` quiet ticks), and keeps offload bytes
 * under the bandwidth budget. Each tick moves each threshold by at most `step`: the edge exits' set how much is
 * offloaded, the cloud exits' (sent with every request) how much accuracy the offloaded frames give up.
 */
export class Controller {
  private thresholds: number[];
  private pressureCap = 1;
  private quietTicks = 0;
  /** Ticks since the cap was last cut: failures of offloads sent before a cut do not cut it again. */
  private sinceCut = Infinity;
  private bytesPerOffload = 0;

  constructor(
    initial: readonly number[],
    readonly edgeExits: number,
    readonly settings: ControlSettings,
  ) {
    this.thresholds = [...initial];
  }

  get current(): readonly number[] {
    return this.thresholds;
  }

  tick(t: TickInputs, shadows: ShadowWindow, frames: FrameWindow): Decision {
    const s = this.settings;
    const rate = t.frames > 0 ? t.offloads / t.frames : 0;
    const pressure = t.pressureFallbacks > 0 || (s.latencyTargetMs > 0 && (t.offloadP95Ms ?? 0) > s.latencyTargetMs);
    this.sinceCut++;
    if (pressure) {
      if (this.sinceCut > 2) {
        this.pressureCap = Math.min(this.pressureCap, rate) * 0.7;
        this.sinceCut = 0;
      }
      this.quietTicks = 0;
    } else if (++this.quietTicks > s.holdTicks) {
      this.pressureCap = Math.min(1, this.pressureCap * 1.2 + 0.01);
    }
    if (t.offloads > 0) {
      const b = t.offloadBytes / t.offloads;
      this.bytesPerOffload = this.bytesPerOffload ? 0.7 * this.bytesPerOffload + 0.3 * b : b;
    }
    const fps = t.seconds > 0 ? t.frames / t.seconds : 0;
    const bandwidthCap =
      s.bandwidthBytesPerS > 0 && this.bytesPerOffload > 0 && fps > 0
        ? Math.min(1, (0.95 * s.bandwidthBytesPerS) / (this.bytesPerOffload * fps))
        : 1;
    const cap = Math.min(this.pressureCap, bandwidthCap);
    const capBinding: Binding = this.pressureCap <= bandwidthCap ? 'cloud_pressure' : 'bandwidth';
    const known = shadows.size >= s.minRecords;

    const scored = this.candidates().map((th) => {
      const est = known ? shadows.estimate(th) : undefined;
      return {
        th,
        off: frames.offloadRate(th),
        loss: est ? est.loss : NaN,
        error: est ? est.lossError : NaN,
        moved: th.reduce((d, v, e) => d + Math.abs(v - this.thresholds[e]!), 0),
      };
    });
    const here = scored.find((c) => c.moved === 0)!;
    const byOffloadThenMove = (a: (typeof scored)[0], b: (typeof scored)[0]) =>
      a.off - b.off || a.moved - b.moved || a.loss - b.loss;
    // Offloading less needs the estimate plus its standard error within the budget (the margin shrinks as records
    // grow); staying or offloading more needs the estimate: no see-saw at the edge of the budget.
    const acceptable = (c: (typeof scored)[0]) =>
      c.off >= here.off || c === here ? c.loss <= s.budget : c.loss + c.error <= s.budget;
    let pick: (typeof scored)[0];
    let binding: Binding;
    if (!known) {
      // Without records only the cap moves thresholds, and only down.
      const down = scored.filter((c) => c.th.every((v, e) => v <= this.thresholds[e]!) && c.off <= cap);
      pick = here.off <= cap ? here : (down.sort(byOffloadThenMove).at(-1) ?? scored.sort(byOffloadThenMove)[0]!);
      binding = here.off > cap ? capBinding : 'no_data';
    } else {
      const withinBudget = scored.filter(acceptable).sort(byOffloadThenMove);
      const best = withinBudget[0];
      if (best && best.off <= cap) {
        pick = best;
        binding = scored.some((c) => c.off < best.off && c.off <= cap) ? 'accuracy' : 'none';
      } else {
        // Under a cap, the cap wins over accuracy: of the thresholds within it, the least loss (none within one
        // step: the lowest offload). Without a cap, no thresholds within one step meet the budget: the least loss.
        const under = scored.filter((c) => c.off <= cap).sort((a, b) => a.loss - b.loss || a.moved - b.moved);
        pick = under[0] ?? scored.sort(byOffloadThenMove)[0]!;
        binding = cap < 1 ? capBinding : 'accuracy';
      }
    }
    this.thresholds = pick.th;
    return {
      thresholds: [...pick.th],
      binding,
      estimatedLoss: pick.loss,
      estimatedOffloadRate: pick.off,
      offloadCap: cap,
      records: shadows.size,
    };
  }

  /**
   * The thresholds in force, each exit's threshold moved alone (the edge's decide the offload rate, the cloud's the
   * loss of offloaded frames: workers apply the thresholds a request carries), and every edge threshold moved
   * together; each by at most one step. The last exit takes everything and never moves.
   */
  private candidates(): number[][] {
    const s = this.settings;
    const th0 = this.thresholds;
    const move = (e: number, m: number) => clamp(th0[e]! + m * s.step, s.floor[e] ?? 0, NEVER);
    const out = new Map<string, number[]>([[th0.join(), [...th0]]]);
    const add = (th: number[]) => out.has(th.join()) || out.set(th.join(), th);
    for (const m of MOVES) {
      if (m === 0) continue;
      for (let e = 0; e < th0.length - 1; e++) add(th0.map((x, i) => (i === e ? move(e, m) : x)));
      add(th0.map((x, i) => (i < this.edgeExits ? move(i, m) : x)));
    }
    return [...out.values()];
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

/** What one offload costs in each mode: bytes on the link, and MACs the cloud computes to the last exit. */
export interface ModeCosts {
  bytes: { state: number; image: number };
  macs: { state: number; image: number };
}

/** Weights of the cost model: cost = bytesPerKB x kilobytes + perMMAC x cloud MMACs. */
export interface ModeWeights {
  bytesPerKB: number;
  perMMAC: number;
}

/**
 * The offload mode of a frame: the cheaper under the weights; while the bandwidth budget binds, the one with fewer
 * bytes; while the cloud is under pressure, the one with less cloud compute.
 */
export function chooseMode(c: ModeCosts, w: ModeWeights, binding: Binding): 'state' | 'image' {
  if (binding === 'bandwidth') return c.bytes.image < c.bytes.state ? 'image' : 'state';
  if (binding === 'cloud_pressure') return c.macs.image < c.macs.state ? 'image' : 'state';
  const cost = (m: 'state' | 'image') => (w.bytesPerKB * c.bytes[m]) / 1000 + (w.perMMAC * c.macs[m]) / 1e6;
  return cost('image') < cost('state') ? 'image' : 'state';
}
