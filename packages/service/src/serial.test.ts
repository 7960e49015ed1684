import { describe, expect, it } from 'vitest';
import { Serial } from './fleet.js';

describe('Serial', () => {
  it('runs one at a time, and once more after requests made while it ran', async () => {
    let runs = 0;
    let active = 0;
    let most = 0;
    const s = new Serial(async () => {
      active++;
      most = Math.max(most, active);
      await new Promise((r) => setTimeout(r, 10));
      runs++;
      active--;
    });
    s.kick();
    s.kick();
    s.kick();
    await s.idle();
    expect(runs).toBe(2);
    expect(most).toBe(1);
  });

  it('takes a new request after a run that finished without waiting', async () => {
    let runs = 0;
    const s = new Serial(async () => void runs++);
    s.kick();
    await s.idle();
    s.kick();
    await s.idle();
    expect(runs).toBe(2);
  });
});
