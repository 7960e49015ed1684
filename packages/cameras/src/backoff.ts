/**
 * The wait before reopening a camera: 1 s, doubling on each failure up to 30 s, each wait drawn within +-20 % so
 * that cameras dropped together (a switch rebooted) do not all come back in the same instant. reset() after a
 * frame arrives.
 */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly firstMs = 1000,
    private readonly maxMs = 30_000,
    private readonly jitter = 0.2,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next wait, in milliseconds. */
  next(): number {
    const base = Math.min(this.maxMs, this.firstMs * 2 ** this.failures);
    this.failures++;
    return Math.round(base * (1 - this.jitter + 2 * this.jitter * this.random()));
  }

  reset(): void {
    this.failures = 0;
  }
}
