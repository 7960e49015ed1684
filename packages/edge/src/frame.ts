// What happens to a frame: the edge stages until an exit is confident; otherwise an offload to the cloud, and on any
// failure of it the best local exit (a fallback). Every path ends in one EdgeResult, built from the frame's context.
import { type Feeds, type ModelDir, type StageExecutor } from '@cascade/runtime';
import { type Log } from '@cascade/service';
import { runEdgeStages, type LocalOutcome } from './local.js';
import type { EdgeMetrics } from './metrics.js';
import type { ExitView, FallbackReason, LocalAnswer, Offloader } from './offload.js';
import type { Frame } from './sources.js';

export type { EdgeViews, LocalOutcome } from './local.js';

export type Outcome = 'exited' | 'offloaded' | 'fallback' | 'error';

/** The one result every frame yields. */
export interface EdgeResult {
  frame: string;
  edge: string;
  /** n-th frame this agent took in (from 1); with the agent's run id it names the result in the results stream. */
  sequence: number;
  /** Ground truth, when the source has it. */
  label?: number;
  class: number;
  /** The predicted class's name (`label` is the ground truth). */
  class_name: string;
  confidence: number;
  exit: number;
  tier: 'edge' | 'cloud';
  outcome: Outcome;
  latency_ms: number;
  offload_bytes: number;
  /** Why a hard frame was answered locally. */
  fallback_reason?: FallbackReason;
  worker?: string;
  error?: string;
  model_version: string;
}

/** `--mode auto`: picks each offload's mode and learns what each costs in bytes. */
export interface ModeChooser {
  choose(): 'state' | 'image';
  note(mode: 'state' | 'image', bytes: number): void;
  seen(mode: 'state' | 'image'): boolean;
}

/** One frame on its way through the agent. */
export interface FrameContext {
  frame: Frame;
  sequence: number;
  started: number;
}

/** The steps of a frame, shared by every frame of one agent. */
export class FramePath {
  constructor(
    private readonly edgeId: string,
    private readonly model: ModelDir,
    private readonly split: number,
    private readonly thresholds: number[],
    private readonly runner: StageExecutor,
    private readonly offloader: Offloader,
    private readonly metrics: EdgeMetrics,
    private readonly log: Log,
  ) {}

  /** Edge stages 0..split-1, leaving at the first exit whose confidence reaches its threshold. */
  async local(frame: Frame): Promise<LocalOutcome> {
    return runEdgeStages(this.model.manifest, this.split, this.thresholds, frame.pixels, async (s, feeds) => {
      const { outputs, computeMs } = await this.runner.run(s, feeds);
      this.metrics.stageSeconds.observe({ stage: String(s) }, computeMs / 1000);
      return outputs;
    });
  }

  /** Offloads a hard frame; its result is the cloud's answer, or the best local one with the fallback's reason. */
  async offload(
    ctx: FrameContext,
    best: LocalAnswer,
    state: Feeds,
    reachable: (up: boolean) => void,
    allExits = false,
    onExits?: (exits: ExitView[]) => void,
    modes?: ModeChooser,
  ): Promise<EdgeResult> {
    const mode = modes?.choose();
    const { request, bytes } = this.offloader.build(ctx.frame.pixels, state, { allExits, ...(mode ? { mode } : {}) });
    if (mode) {
      this.metrics.offloadModes.inc({ mode });
      modes!.note(mode, bytes);
      // Until both modes have been seen, the other is built too, only to learn its size.
      const other = mode === 'state' ? 'image' : 'state';
      if (!modes!.seen(other)) modes!.note(other, this.offloader.build(ctx.frame.pixels, state, { mode: other }).bytes);
    }
    this.metrics.inflight.inc();
    const sent = performance.now();
    const out = await this.offloader.send(request, bytes).finally(() => this.metrics.inflight.dec());
    if (out.bytes > 0) {
      this.metrics.offloadBytes.observe(out.bytes);
      const label = out.kind === 'answered' ? 'ok' : out.reason;
      this.metrics.offloadSeconds.observe({ result: label }, (performance.now() - sent) / 1000);
    }
    if (out.kind === 'answered') {
      reachable(true);
      if (out.exits?.length) onExits?.(out.exits);
      return { ...this.result(ctx, out.answer, 'cloud', 'offloaded', out.bytes), worker: out.worker };
    }
    if (out.reason === 'timeout' || out.reason === 'no_responders' || out.reason === 'disconnected') reachable(false);
    if (out.reason === 'too_large') this.log('offload_too_large', { frame: ctx.frame.id, detail: out.detail });
    const quiet = out.reason === 'timeout' || out.reason === 'no_responders'; // their reason says it all
    return {
      ...this.result(ctx, best, 'edge', 'fallback', out.bytes),
      fallback_reason: out.reason,
      ...(out.detail && !quiet ? { error: out.detail } : {}),
    };
  }

  result(ctx: FrameContext, d: LocalAnswer, tier: 'edge' | 'cloud', outcome: Outcome, bytes = 0): EdgeResult {
    const m = this.model.manifest;
    return {
      frame: ctx.frame.id,
      edge: this.edgeId,
      sequence: ctx.sequence,
      ...(ctx.frame.label !== undefined ? { label: ctx.frame.label } : {}),
      class: d.classIndex,
      class_name: m.classes[d.classIndex] ?? '',
      confidence: d.confidence,
      exit: d.exit,
      tier,
      outcome,
      latency_ms: performance.now() - ctx.started,
      offload_bytes: bytes,
      model_version: m.version,
    };
  }

  /** A frame that could not be processed at all (inference failed): still one result, with the error. */
  errorResult(ctx: FrameContext, err: Error): EdgeResult {
    this.log('frame_error', { frame: ctx.frame.id, error: err.message });
    const r = this.result(ctx, { classIndex: -1, confidence: 0, exit: -1 }, 'edge', 'error');
    return { ...r, class_name: '', error: err.message };
  }

  /** Counts a result in the metrics. */
  observe(r: EdgeResult): void {
    this.metrics.frames.inc({ outcome: r.outcome, model_version: r.model_version });
    this.metrics.frameSeconds.observe({ outcome: r.outcome }, r.latency_ms / 1000);
    if (r.fallback_reason) this.metrics.fallbacks.inc({ reason: r.fallback_reason });
    if (r.exit >= 0) {
      this.metrics.exits.inc({ exit: String(r.exit), tier: r.tier });
      this.metrics.confidence.observe({ tier: r.tier }, r.confidence);
    }
  }
}
