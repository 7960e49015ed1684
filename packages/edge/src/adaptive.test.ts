import { describe, expect, it } from 'vitest';
import { seededRandom } from '@cascade/proto';
import { exitUnder, FrameWindow, ShadowWindow, type ShadowRecord } from './adaptive.js';
import { chooseMode, Controller, type ControlSettings, type TickInputs } from './controller.js';

const rng = seededRandom;

/**
 * Frames of a model with two edge exits and a last exit that is always sure. Each edge exit is right with the
 * probability of its confidence times `honesty` (1: calibrated; below 1: confident and wrong, as under drift).
 */
function frames(n: number, seed: number, honesty = 1): ShadowRecord[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const truth = Math.floor(r() * 10);
    const conf = [0.3 + 0.7 * r(), 0.4 + 0.6 * r(), 1];
    const classes = conf.map((c, e) => (e === 2 || r() < c * honesty ? truth : (truth + 1 + Math.floor(r() * 9)) % 10));
    const teacher = Array.from({ length: 10 }, (_, k) => (k === truth ? 1 : 0));
    return { classes, confidences: conf, teacher };
  });
}

const SETTINGS: ControlSettings = {
  budget: 0.02,
  latencyTargetMs: 0,
  bandwidthBytesPerS: 0,
  step: 0.05,
  minRecords: 50,
  holdTicks: 3,
  floor: [0, 0],
};

/** A controller over a fixed population; each tick sees the offload rate its current thresholds give. */
function harness(records: ShadowRecord[], settings: Partial<ControlSettings> = {}, start = [0.6, 0.6, 0]) {
  const shadows = new ShadowWindow(records.length);
  const window = new FrameWindow(2, records.length);
  for (const r of records) {
    shadows.add(r);
    window.add(r.confidences.slice(0, 2));
  }
  const c = new Controller(start, 2, { ...SETTINGS, ...settings });
  const tick = (over: Partial<TickInputs> = {}) => {
    const rate = window.offloadRate(c.current);
    return c.tick(
      { seconds: 1, frames: 100, offloads: Math.round(rate * 100), offloadBytes: Math.round(rate * 100) * 10_000, pressureFallbacks: 0, ...over }, // prettier-ignore
      shadows,
      window,
    );
  };
  return { c, shadows, window, tick };
}

describe('adaptive - estimates from shadow records', () => {
  it('replays the exit rule and measures loss and agreement per exit', () => {
    expect(exitUnder([0.9, 0.2, 1], [0.8, 0.8, 0])).toBe(0);
    expect(exitUnder([0.5, 0.85, 1], [0.8, 0.8, 0])).toBe(1);
    expect(exitUnder([0.5, 0.5, 0.1], [0.8, 0.8, 0])).toBe(2);
    const w = new ShadowWindow(3);
    const p = (k: number, q = 0.9) => Array.from({ length: 3 }, (_, i) => (i === k ? q : (1 - q) / 2));
    w.add({ classes: [1, 1, 1], confidences: [0.9, 0.9, 0.9], teacher: p(1) }); // exit 0, agrees
    w.add({ classes: [2, 1, 1], confidences: [0.95, 0.9, 0.9], teacher: p(1, 0.6) }); // exit 0, disagrees
    w.add({ classes: [0, 0, 2], confidences: [0.1, 0.1, 0.9], teacher: p(2) }); // last exit
    const e = w.estimate([0.8, 0.8, 0]);
    expect(e.records).toBe(3);
    expect(e.leaving).toEqual([2, 0, 1]);
    expect(e.agreement[0]).toBe(0.5);
    expect(e.agreement[1]).toBeNaN();
    expect(e.agreement[2]).toBe(1);
    expect(e.disagreement).toBeCloseTo(1 / 3);
    expect(e.loss).toBeCloseTo((0.6 - 0.2) / 3);
    expect(w.estimate([2, 2, 0]).loss).toBe(0); // everything to the last exit gives nothing up
    // Where the teacher (every exit's mean) believes the early answer more than the last exit's, the loss is negative.
    const w2 = new ShadowWindow(1);
    w2.add({ classes: [2, 2, 1], confidences: [0.9, 0.9, 0.5], teacher: [0.1, 0.3, 0.6] });
    expect(w2.estimate([0.8, 0.8, 0]).loss).toBeCloseTo(-0.3);
    w.add({ classes: [1, 1, 1], confidences: [0.9, 0.9, 0.9], teacher: p(1) }); // the ring drops the first
    expect(w.size).toBe(3);
    expect(w.estimate([0.8, 0.8, 0]).leaving).toEqual([2, 0, 1]);
  });

  it('the frame window counts a frame that left early as offloaded when its exit would no longer fire', () => {
    const f = new FrameWindow(2, 4);
    f.add([0.9, NaN]);
    f.add([0.5, 0.7]);
    f.add([0.2, 0.3]);
    expect(f.offloadRate([0.8, 0.6])).toBeCloseTo(1 / 3);
    expect(f.offloadRate([0.95, 0.6])).toBeCloseTo(2 / 3);
    expect(f.offloadRate([0, 0])).toBe(0);
  });
});

describe('adaptive - the controller', () => {
  it('raises thresholds until the estimated loss is within budget, then holds them', () => {
    const h = harness(frames(2000, 1), {}, [0.4, 0.45, 0]);
    const before = h.shadows.estimate(h.c.current).loss;
    expect(before).toBeGreaterThan(0.1);
    const decisions = Array.from({ length: 40 }, () => h.tick());
    const end = decisions.at(-1)!;
    expect(end.estimatedLoss).toBeLessThanOrEqual(SETTINGS.budget);
    expect(end.binding).toBe('accuracy');
    // Settled: the last ten ticks do not move the thresholds.
    const tail = decisions.slice(-10).map((d) => d.thresholds.join());
    expect(new Set(tail).size).toBe(1);
    // Each tick moved a threshold by at most one step.
    let prev = [0.4, 0.45, 0];
    for (const d of decisions) {
      d.thresholds.forEach((t, e) => expect(Math.abs(t - prev[e]!)).toBeLessThanOrEqual(SETTINGS.step + 1e-9));
      prev = d.thresholds;
    }
  });

  it('offloads less when the exits are right more often than the thresholds assume', () => {
    const h = harness(frames(2000, 2, 1.25), { budget: 0.02 }, [0.95, 0.95, 0]);
    const start = h.window.offloadRate(h.c.current);
    for (let i = 0; i < 40; i++) h.tick();
    const end = h.tick();
    expect(end.estimatedOffloadRate).toBeLessThan(start - 0.3);
    expect(end.estimatedLoss).toBeLessThanOrEqual(0.02);
  });

  it('without enough records it holds the thresholds and says so', () => {
    const h = harness(frames(20, 3), {}, [0.4, 0.45, 0]);
    const d = h.tick();
    expect(d.binding).toBe('no_data');
    expect(d.thresholds).toEqual([0.4, 0.45, 0]);
    expect(d.estimatedLoss).toBeNaN();
  });

  it('sheds load under cloud pressure, holds while it lasts, and offloads again some ticks after it ends', () => {
    const h = harness(frames(2000, 4), { budget: 0.02 }, [0.4, 0.45, 0]);
    for (let i = 0; i < 40; i++) h.tick();
    const settled = h.window.offloadRate(h.c.current);
    expect(settled).toBeGreaterThan(0.2);
    const pressured = Array.from({ length: 6 }, () => h.tick({ pressureFallbacks: 5 }));
    expect(pressured.every((d) => d.binding === 'cloud_pressure')).toBe(true);
    expect(pressured.at(-1)!.estimatedOffloadRate).toBeLessThan(settled * 0.5);
    // Quiet again: the cap holds for holdTicks, then rises; accuracy brings the offload back.
    const quiet = Array.from({ length: 60 }, () => h.tick());
    expect(quiet.slice(0, 3).every((d) => d.offloadCap === pressured.at(-1)!.offloadCap)).toBe(true);
    expect(quiet.at(-1)!.estimatedOffloadRate).toBeCloseTo(settled, 1);
    expect(quiet.at(-1)!.binding).toBe('accuracy');
  });

  it('latency above the target counts as pressure', () => {
    const h = harness(frames(2000, 5), { latencyTargetMs: 100 }, [0.7, 0.7, 0]);
    expect(h.tick({ offloadP95Ms: 80 }).binding).not.toBe('cloud_pressure');
    expect(h.tick({ offloadP95Ms: 250 }).binding).toBe('cloud_pressure');
  });

  it('keeps offload bytes under the bandwidth budget', () => {
    // 100 frames/s at 10,000 bytes an offload; 150 kB/s allows 15 % of frames.
    const h = harness(frames(2000, 6), { bandwidthBytesPerS: 150_000, budget: 0.005 }, [0.7, 0.7, 0]);
    const ds = Array.from({ length: 40 }, () => h.tick());
    const end = ds.at(-1)!;
    expect(end.binding).toBe('bandwidth');
    expect(end.estimatedOffloadRate * 100 * 10_000).toBeLessThanOrEqual(150_000);
    expect(end.estimatedOffloadRate * 100 * 10_000).toBeGreaterThan(0.8 * 150_000);
  });

  it('moves a cloud exit threshold when the loss comes from frames that leave in the cloud', () => {
    // Two edge exits that never fire, a cloud exit (2) that is wrong below 0.9 confidence, and the last exit.
    const r = rng(7);
    const records = Array.from({ length: 1000 }, () => {
      const truth = Math.floor(r() * 10);
      const c2 = 0.5 + 0.5 * r();
      const classes = [truth, truth, c2 < 0.9 ? (truth + 1) % 10 : truth, truth];
      return { classes, confidences: [0.1, 0.1, c2, 1], teacher: Array.from({ length: 10 }, (_, k) => +(k === truth)) };
    });
    const shadows = new ShadowWindow(1000);
    const window = new FrameWindow(2, 1000);
    for (const x of records) {
      shadows.add(x);
      window.add([0.1, 0.1]);
    }
    const c = new Controller([0.6, 0.6, 0.6, 0], 2, { ...SETTINGS, budget: 0.01, step: 0.05 });
    const inputs = { seconds: 1, frames: 100, offloads: 100, offloadBytes: 1e6, pressureFallbacks: 0 };
    let d = c.tick(inputs, shadows, window);
    for (let i = 0; i < 20; i++) d = c.tick(inputs, shadows, window);
    expect(d.thresholds[2]).toBeGreaterThanOrEqual(0.9);
    expect(d.estimatedLoss).toBeLessThanOrEqual(0.01);
    expect(d.thresholds[3]).toBe(0); // the last exit never moves
  });
});

describe('adaptive - the offload mode of a frame', () => {
  // The default model: state 12.7 KB and 63.6 MMACs in the cloud, image 2.5 KB and 94.9 MMACs.
  const costs = { bytes: { state: 12_700, image: 2_500 }, macs: { state: 63.6e6, image: 94.9e6 } };

  it('picks the cheaper mode under the weights', () => {
    expect(chooseMode(costs, { bytesPerKB: 1, perMMAC: 0.1 }, 'none')).toBe('image'); // 11.99 against 19.06
    expect(chooseMode(costs, { bytesPerKB: 1, perMMAC: 1 }, 'none')).toBe('state'); // 97.4 against 76.3
    expect(chooseMode(costs, { bytesPerKB: 0, perMMAC: 1 }, 'accuracy')).toBe('state');
  });

  it('takes the fewer bytes while bandwidth binds, the less cloud compute while the cloud is under pressure', () => {
    expect(chooseMode(costs, { bytesPerKB: 0, perMMAC: 1 }, 'bandwidth')).toBe('image');
    expect(chooseMode(costs, { bytesPerKB: 1, perMMAC: 0 }, 'cloud_pressure')).toBe('state');
  });
});
