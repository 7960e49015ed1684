/**
 * A quantile sketch of fixed size: counts in logarithmic buckets, so any quantile it reports is within
 * `relativeAccuracy` of a value that was observed at that rank (the DDSketch construction). Memory is bounded
 * by the range of values, not their number: 1 % accuracy over 1 µs … 1,000 s takes at most ~1,000 buckets.
 */
export class QuantileSketch {
  private readonly gamma: number;
  private readonly logGamma: number;
  private readonly buckets = new Map<number, number>();
  private zeros = 0;
  private total = 0;
  private lo = Number.POSITIVE_INFINITY;
  private hi = Number.NEGATIVE_INFINITY;

  constructor(
    readonly relativeAccuracy = 0.01,
    private readonly minValue = 1e-6,
  ) {
    this.gamma = (1 + relativeAccuracy) / (1 - relativeAccuracy);
    this.logGamma = Math.log(this.gamma);
  }

  /** Number of values added. */
  get count(): number {
    return this.total;
  }

  add(x: number): void {
    if (!Number.isFinite(x)) return;
    this.total++;
    if (x < this.lo) this.lo = x;
    if (x > this.hi) this.hi = x;
    if (x <= this.minValue) {
      this.zeros++;
      return;
    }
    const k = Math.ceil(Math.log(x) / this.logGamma);
    this.buckets.set(k, (this.buckets.get(k) ?? 0) + 1);
  }

  /** The value at quantile q (nearest rank), or null when empty; exact at the extremes. */
  quantile(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    if (rank >= this.total) return this.hi;
    let seen = this.zeros;
    if (rank <= seen) return this.lo;
    for (const k of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(k)!;
      if (seen >= rank) {
        const mid = (2 * this.gamma ** k) / (this.gamma + 1);
        return Math.min(this.hi, Math.max(this.lo, mid));
      }
    }
    return this.hi;
  }

  /** Buckets in use (for tests of the memory bound). */
  get size(): number {
    return this.buckets.size;
  }
}
