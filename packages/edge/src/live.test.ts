import { describe, expect, it } from 'vitest';
import { quantile } from './live.js';

describe('live view - quantiles from histogram buckets, as Prometheus computes them', () => {
  const buckets = [
    { le: 1, count: 10 },
    { le: 2, count: 30 },
    { le: 5, count: 40 },
    { le: Number.POSITIVE_INFINITY, count: 40 },
  ];

  it('interpolates linearly inside the bucket that holds the rank', () => {
    expect(quantile(buckets, 0.25)).toBeCloseTo(1, 10); // rank 10: the top of the first bucket
    expect(quantile(buckets, 0.5)).toBeCloseTo(1.5, 10); // rank 20: half-way through (1, 2]
    expect(quantile(buckets, 0.875)).toBeCloseTo(3.5, 10); // rank 35: half-way through (2, 5]
  });

  it('is null without observations, and the highest finite bound when the rank is in +Inf', () => {
    expect(
      quantile(
        [
          { le: 1, count: 0 },
          { le: Number.POSITIVE_INFINITY, count: 0 },
        ],
        0.5,
      ),
    ).toBeNull();
    expect(
      quantile(
        [
          { le: 1, count: 1 },
          { le: Number.POSITIVE_INFINITY, count: 5 },
        ],
        0.99,
      ),
    ).toBe(1);
  });
});
