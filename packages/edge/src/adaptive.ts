// The edge's view of its own accuracy and a controller that moves its thresholds.
//
// Frames that leave at an edge exit never reach the cloud, so the edge earns labels: a small random share of frames
// is also finished to the last exit (shadow requests for frames that exited, all_exits on offloads). Each such frame
// is a record of what every exit said. Because every exit is known for a record, the exit rule can be replayed under
// any thresholds: the accuracy the cascade gives up against the last exit, and how often it would offload, are
// estimated for candidate thresholds before moving to them.
//
// The teacher is the mean of every exit's probabilities, not the last exit alone. Under drift the last exit can fall
// further than the early ones (on the default model, blurred images: last exit 30.7 %, first exit 31.4 %, the mean of
// all exits 31.4 %), and a last-exit teacher then counts the early exits' right answers as losses: on the drift
// scenario's corrupted frames it overestimated the loss by 2.5 to 5.9 points, the ensemble by 0.9 to 3.6.
//
// No Node or NATS here: plain arithmetic, shared by every edge and unit-tested on its own.

/** What every exit said about one frame. */
export interface ShadowRecord {
  /** Per exit: the predicted class. */
  classes: number[];
  /** Per exit: its max-softmax confidence. */
  confidences: number[];
  /** The mean of every exit's softmax, one per class: the teacher's probability that each class is right. */
  teacher: number[];
}

/** The exit a frame takes under `thresholds`: the first whose confidence reaches its threshold, else the last. */
export function exitUnder(confidences: readonly number[], thresholds: readonly number[]): number {
  const last = thresholds.length - 1;
  for (let e = 0; e < last; e++) if (confidences[e]! >= thresholds[e]!) return e;
  return last;
}

/** What the records say about a set of thresholds. */
export interface Estimate {
  /** Records the estimate rests on. */
  records: number;
  /**
   * Expected accuracy given up against the last exit (0.01 = 1 point): the mean over records of the teacher's
   * probability of the last exit's class minus its probability of the class the cascade answers. Zero where they
   * agree; negative where the teacher believes the cascade's answer more than the last exit's.
   */
  loss: number;
  /** Standard error of `loss` (the spread of the records' losses over the square root of their number). */
  lossError: number;
  /** Share of records whose answer differs from the last exit's. */
  disagreement: number;
  /** Per exit: share of the records leaving there whose class is the last exit's (NaN where none leave). */
  agreement: number[];
  /** Per exit: records leaving there. */
  leaving: number[];
}

/** The most recent shadow records (a ring of `capacity`). */
export class ShadowWindow {
  private readonly ring: ShadowRecord[] = [];
  private next = 0;

  constructor(readonly capacity = 400) {}

  get size(): number {
    return this.ring.length;
  }

  add(r: ShadowRecord): void {
    if (this.ring.length < this.capacity) this.ring.push(r);
    else this.ring[this.next] = r;
    this.next = (this.next + 1) % this.capacity;
  }

  clear(): void {
    this.ring.length = 0;
    this.next = 0;
  }

  estimate(thresholds: readonly number[]): Estimate {
    const exits = thresholds.length;
    const last = exits - 1;
    const agree = new Array<number>(exits).fill(0);
    const leaving = new Array<number>(exits).fill(0);
    let loss = 0;
    let squares = 0;
    let disagree = 0;
    for (const r of this.ring) {
      const e = exitUnder(r.confidences, thresholds);
      const answer = r.classes[e]!;
      const truth = r.classes[last]!;
      leaving[e]!++;
      if (answer === truth) agree[e]!++;
      else {
        disagree++;
        const l = r.teacher[truth]! - r.teacher[answer]!;
        loss += l;
        squares += l * l;
      }
    }
    const n = this.ring.length;
    const mean = n ? loss / n : 0;
    return {
      records: n,
      loss: mean,
      lossError: n > 1 ? Math.sqrt(Math.max(0, squares / n - mean * mean) / (n - 1)) : Infinity,
      disagreement: n ? disagree / n : 0,
      agreement: agree.map((a, e) => (leaving[e] ? a / leaving[e]! : NaN)),
      leaving,
    };
  }
}

/**
 * The edge exits' confidences of the most recent frames (NaN for an exit a frame did not reach), to replay the exit
 * rule for candidate thresholds: the share of frames they would offload.
 */
export class FrameWindow {
  private readonly ring: Float64Array;
  private count = 0;
  private next = 0;

  constructor(
    readonly edgeExits: number,
    readonly capacity = 2000,
  ) {
    this.ring = new Float64Array(edgeExits * capacity).fill(NaN);
  }

  get size(): number {
    return this.count;
  }

  /** `confidences`: one per edge exit, NaN where the frame left before reaching it. */
  add(confidences: readonly number[]): void {
    const at = this.next * this.edgeExits;
    for (let e = 0; e < this.edgeExits; e++) this.ring[at + e] = confidences[e] ?? NaN;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /**
   * Share of frames no edge exit would take under `thresholds` (its first edge-exit entries). A frame that left early
   * counts as offloaded when the thresholds would no longer let it leave there (its later exits are unknown).
   */
  offloadRate(thresholds: readonly number[]): number {
    if (this.count === 0) return 0;
    let offloaded = 0;
    for (let f = 0; f < this.count; f++) {
      let leaves = false;
      for (let e = 0; e < this.edgeExits && !leaves; e++) leaves = this.ring[f * this.edgeExits + e]! >= thresholds[e]!;
      if (!leaves) offloaded++;
    }
    return offloaded / this.count;
  }
}

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
