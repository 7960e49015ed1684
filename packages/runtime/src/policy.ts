/** Max-softmax confidence and the exit rule shared by edge and cloud. */

export interface ExitDecision {
  classIndex: number;
  confidence: number;
}

/** Softmax of one row of logits (float64 arithmetic), returned as probabilities. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i]! - max);
    sum += out[i]!;
  }
  for (let i = 0; i < out.length; i++) out[i]! /= sum;
  return out;
}

/** Class and max-softmax confidence of one row. */
export function decide(logits: ArrayLike<number>): ExitDecision {
  return decideProbabilities(softmax(logits));
}

/** Class and confidence of one row of probabilities. */
export function decideProbabilities(p: ArrayLike<number>): ExitDecision {
  let best = 0;
  for (let i = 1; i < p.length; i++) if (p[i]! > p[best]!) best = i;
  return { classIndex: best, confidence: p[best]! };
}

/** Whether a frame leaves at `exit`: its confidence reaches the threshold, or it is the last exit. */
export function exitsHere(exit: number, confidence: number, thresholds: ArrayLike<number>): boolean {
  return exit === thresholds.length - 1 || confidence >= thresholds[exit]!;
}
