// The edge's view of its own accuracy (controller.ts moves its thresholds by it).
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
