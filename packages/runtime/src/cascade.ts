import { elementCount } from '@cascade/proto';
import type { Manifest } from './manifest-core.js';
import { decide, exitsHere } from './policy.js';
import type { Feeds, HostTensor, StageSessions } from './stages.js';

/** Which rows of a batch go on past an exit: each row's thresholds (one per exit) and whether it must reach the last. */
export interface ExitRule {
  /** rows × exits, row-major: row r's threshold for exit e at r * exits + e. */
  thresholds: Float64Array;
  /** 1 where the row runs to the last exit whatever its thresholds say (all_exits). */
  allExits: Uint8Array;
}

/** One stage's share of a batch's run. */
export interface StagePass {
  stage: number;
  /** The batch rows this stage computed, in the order of the logits' rows. */
  rows: Int32Array;
  /** Each of the stage's exits' logits (rows × classes), by exit index. */
  logits: Record<number, Float32Array>;
  /**
   * For each row of `rows`, the exit of this stage the rule answers it at (the first whose confidence reaches the
   * row's threshold, the last exit always), or -1: the one place the exit rule is applied to a batch.
   */
  exitAt: Int32Array;
  /** Wall time of onnxruntime's run() for this stage; a joined graph's whole run is on its first stage. */
  computeMs: number;
  /** Computed by a joined graph whose run is counted on an earlier pass. */
  joined?: boolean;
}

/**
 * Runs a batch from stage `first` on, letting rows leave at each stage's exits as the rule says, without handing
 * anything back between stages: the carried state goes from one stage's outputs to the next stage's inputs as is, or
 * with the leaving rows taken out. With `joined` (stages `first`.. as one graph) every row runs to the last exit in
 * one call, and every pass lists every row. `feeds` holds stage `first`'s inputs for every row of the batch.
 * The same rule applied to the passes' logits answers each row at the exit it left at (Batcher does). Each pass goes
 * to `onPass` as soon as its stage has run, so rows that leave early can be answered while later stages compute.
 */
export async function runCascade(
  sessions: StageSessions,
  m: Manifest,
  first: number,
  feeds: Feeds,
  rule: ExitRule,
  joined: boolean,
  onPass: (pass: StagePass) => void = () => undefined,
): Promise<StagePass[]> {
  const n = rule.allExits.length;
  const all = Int32Array.from({ length: n }, (_, i) => i);
  if (joined) {
    const t = performance.now();
    const out = await sessions.runFused(first, feeds);
    const computeMs = performance.now() - t;
    const passes = m.stages.slice(first).map((stage, i) => {
      const logits = exitLogits(stage.exits, m, out);
      return {
        stage: stage.index,
        rows: all,
        logits,
        exitAt: exitsOf(stage.exits, logits, all, rule, m),
        computeMs: i === 0 ? computeMs : 0,
        ...(i > 0 ? { joined: true } : {}),
      };
    });
    passes.forEach(onPass);
    return passes;
  }
  const passes: StagePass[] = [];
  let rows = all;
  let inputs = feeds; // the next stage's inputs, for `rows`
  for (let s = first; s < m.stages.length && rows.length > 0; s++) {
    const stage = m.stages[s]!;
    const t = performance.now();
    const out = await sessions.run(s, inputs);
    const computeMs = performance.now() - t;
    const logits = exitLogits(stage.exits, m, out);
    const exitAt = exitsOf(stage.exits, logits, rows, rule, m);
    const pass = { stage: s, rows, logits, exitAt, computeMs };
    passes.push(pass);
    if (s === m.stages.length - 1) {
      onPass(pass);
      break;
    }
    const keep: number[] = [];
    rows.forEach((row, p) => {
      if (rule.allExits[row] || exitAt[p]! < 0) keep.push(p); // all_exits rows run on past their answer
    });
    const next: Feeds = {};
    for (const t of m.stages[s + 1]!.inputs) {
      const tensor = out[t.name] ?? inputs[t.name]!;
      next[t.name] = keep.length === rows.length ? tensor : takeRows(tensor, keep);
    }
    inputs = next;
    rows = Int32Array.from(keep, (p) => rows[p]!);
    onPass(pass); // after the rows are read: the pass's buffers may be handed over
  }
  return passes;
}

/** Each row's exit among a stage's `exits` under the rule (-1: none of them), from the exits' logits. */
function exitsOf(
  exits: number[],
  logits: Record<number, Float32Array>,
  rows: Int32Array,
  rule: ExitRule,
  m: Manifest,
): Int32Array {
  const n = m.exits.length;
  const classes = m.classes.length;
  return rows.map((row, p) => {
    const th = rule.thresholds.subarray(row * n, (row + 1) * n);
    const e = exits.find((e) =>
      exitsHere(e, decide(logits[e]!.subarray(p * classes, (p + 1) * classes)).confidence, th),
    );
    return e ?? -1;
  });
}

function exitLogits(exits: number[], m: Manifest, out: Feeds): Record<number, Float32Array> {
  return Object.fromEntries(exits.map((e) => [e, out[m.exits[e]!.output]!.data as Float32Array]));
}

/** The rows `keep` of a batch tensor, in that order, in a buffer of their own. */
function takeRows(t: HostTensor, keep: readonly number[]): HostTensor {
  const per = elementCount(t.dims.slice(1));
  const src = t.data;
  const data = src instanceof Uint8Array ? new Uint8Array(keep.length * per) : new Float32Array(keep.length * per);
  keep.forEach((r, i) => data.set(src.subarray(r * per, (r + 1) * per), i * per));
  return { data, dims: [keep.length, ...t.dims.slice(1)] };
}
