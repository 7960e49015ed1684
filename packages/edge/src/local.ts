// The edge's part of a frame, with no Node in the way: the edge stages until an exit is confident. The Node edge and a
// browser page run frames with this one implementation, each with its own onnxruntime.
import { decideProbabilities, exitsHere, softmax, type Manifest } from '@cascade/runtime/core';
import type { LocalAnswer, StateTensor } from './request.js';

/** Class, confidence and probabilities of each edge exit a frame reached (the others undefined). */
export type EdgeViews = ({ classIndex: number; confidence: number; probabilities: Float64Array } | undefined)[];

/**
 * After the edge stages: the exit that ended the frame, or the best local answer and the state to offload; with
 * what each edge exit said (an exit's stage computes all its exits at once, so a stage's later exits are known too).
 */
export type LocalOutcome = ({ exited: LocalAnswer } | { best: LocalAnswer; state: Record<string, StateTensor> }) & {
  views: EdgeViews;
};

/** Runs one stage: its inputs by name (the image, batch of one, and the state the earlier stage carried). */
export type RunStage = (stage: number, feeds: Record<string, StateTensor>) => Promise<Record<string, StateTensor>>;

/**
 * Edge stages 0..split-1 on one frame's pixels (uint8, the manifest's input shape), leaving at the first exit whose
 * max-softmax confidence reaches its threshold.
 */
export async function runEdgeStages(
  m: Manifest,
  split: number,
  thresholds: readonly number[],
  pixels: Uint8Array,
  run: RunStage,
): Promise<LocalOutcome> {
  let carried: Record<string, StateTensor> = {};
  let best: LocalAnswer | undefined;
  let exited: LocalAnswer | undefined;
  const views: EdgeViews = [];
  for (let s = 0; s < split; s++) {
    const stage = m.stages[s]!;
    // A copy per stage: a runner may take the buffer it is given (a transfer to its thread).
    const feeds: Record<string, StateTensor> = { image: { data: pixels.slice(), dims: [1, ...m.input.shape] } };
    for (const t of stage.inputs) if (t.name !== 'image') feeds[t.name] = carried[t.name]!;
    const outputs = await run(s, feeds);
    for (const e of stage.exits) {
      const probabilities = softmax(outputs[m.exits[e]!.output]!.data as Float32Array);
      const d = decideProbabilities(probabilities);
      views[e] = { ...d, probabilities };
      if (exited) continue;
      best = { ...d, exit: e };
      if (exitsHere(e, best.confidence, thresholds)) exited = best;
    }
    if (exited) return { exited, views };
    carried = outputs;
  }
  return { best: best!, state: carried, views };
}
