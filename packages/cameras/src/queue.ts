/**
 * The frames a camera took that the agent has not started: at most `capacity`. When the agent falls behind, the
 * oldest is dropped for the newest (a camera's latest picture is worth more than an old one) and `onDrop` counts it.
 */
export class FrameQueue<T> {
  private readonly items: T[] = [];
  private waiter: ((v: T | undefined) => void) | undefined;
  private closed = false;

  constructor(
    private readonly capacity: number,
    private readonly onDrop: (dropped: T) => void,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity ${capacity}: at least 1`);
  }

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    if (this.closed) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(item);
      return;
    }
    if (this.items.length >= this.capacity) this.onDrop(this.items.shift()!);
    this.items.push(item);
  }

  /** The oldest frame, waiting for one; undefined once closed and empty. */
  take(): Promise<T | undefined> {
    if (this.items.length) return Promise.resolve(this.items.shift());
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** No more frames: a waiting take() gets undefined; frames still queued are taken first. */
  close(): void {
    this.closed = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w(undefined);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    for (;;) {
      const item = await this.take();
      if (item === undefined) return;
      yield item;
    }
  }
}
