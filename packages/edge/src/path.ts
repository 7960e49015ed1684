// What happens to a frame, in one place: the edge stages until an exit is confident; otherwise an offload to the
// cloud, and on any failure of it the best local exit (a fallback). Every frame yields one EdgeResult, also when
// inference fails. No Node in the way: the Node agent and the browser page run frames through this one class, each
// with its own stage runner, transport and observer.
import type { Manifest } from '@cascade/runtime/core';
import { runEdgeStages, type EdgeViews, type RunStage } from './local.js';
import {
  assembleRequest,
  encodeParts,
  requestMode,
  type ExitView,
  type LocalAnswer,
  type OffloadOutcome,
  type RequestSettings,
  type StateTensor,
} from './request.js';
import type { EdgeResult, Frame, Outcome } from './result.js';
import type { Transport } from './transport.js';

export type { EdgeResult, Frame, Outcome } from './result.js';

/** `--mode auto`: picks each offload's mode and learns what each costs in bytes. */
export interface ModeChooser {
  choose(): 'state' | 'image';
  note(mode: 'state' | 'image', bytes: number): void;
  seen(mode: 'state' | 'image'): boolean;
}

/** What decides a frame: the thresholds in force and, for `--mode auto`, the mode chooser. The adaptation owns it. */
export interface Policy {
  readonly thresholds: readonly number[];
  readonly modes?: ModeChooser | undefined;
}

/** What the path tells of each frame; every method optional. The Node agent's is the adaptation with the metrics. */
export interface FrameObserver {
  /** What each edge exit said, after the edge stages. */
  views?(views: EdgeViews): void;
  /** Whether this frame is sampled: a hard one then asks for every exit, an easy one is shadowed. */
  sample?(): boolean;
  /** A sampled frame that exited at the edge: the observer may send it to the cloud as a shadow. */
  shadow?(pixels: Uint8Array): void;
  /** The mode `--mode auto` chose for an offload. */
  mode?(mode: 'state' | 'image'): void;
  /** An offload's outcome and how long it took. */
  offloaded?(out: OffloadOutcome, seconds: number, frame: Frame): void;
  /** What every cloud exit said, for a sampled hard frame. */
  cloudExits?(views: EdgeViews, exits: ExitView[]): void;
  /** Every result, once, before process() returns it. */
  result?(r: EdgeResult): void;
  /** Inference failed: the frame's result carries the error. */
  failed?(frame: Frame, err: Error): void;
}

/** Waits until a hard frame may offload; resolves with the release of its slot. */
export type Admit = () => Promise<() => void>;

interface FrameAt {
  frame: Frame;
  sequence: number;
  started: number;
}

export class FramePath {
  /**
   * `run` runs one edge stage; `transport` is undefined without a cloud (hard frames then fall back, `no_cloud`);
   * `request` names the edge and its offload settings.
   */
  constructor(
    readonly manifest: Manifest,
    readonly split: number,
    private readonly request: RequestSettings,
    private readonly run: RunStage,
    private readonly transport: Transport | undefined,
    private readonly policy: Policy,
    private readonly observer: FrameObserver = {},
  ) {}

  /** One frame end to end; never throws. `admit` holds a hard frame until it may offload. */
  async process(frame: Frame, sequence: number, admit?: Admit): Promise<EdgeResult> {
    const at: FrameAt = { frame, sequence, started: performance.now() };
    const o = this.observer;
    let release: (() => void) | undefined;
    let r: EdgeResult;
    try {
      const local = await runEdgeStages(this.manifest, this.split, this.policy.thresholds, frame.pixels, this.run);
      o.views?.(local.views);
      const sampled = o.sample?.() ?? false;
      if ('exited' in local) {
        r = this.result(at, local.exited, 'edge', 'exited');
        if (sampled) o.shadow?.(frame.pixels);
      } else {
        release = await admit?.();
        r = await this.offload(at, local.best, local.state, local.views, sampled);
      }
    } catch (err) {
      o.failed?.(frame, err as Error);
      r = this.result(at, { classIndex: -1, confidence: 0, exit: -1 }, 'edge', 'error');
      r = { ...r, class_name: '', error: (err as Error).message };
    } finally {
      release?.();
    }
    o.result?.(r);
    return r;
  }

  /** Sends a shadow of a frame that exited at the edge: the image alone, asking for every exit. */
  shadow(pixels: Uint8Array): Promise<OffloadOutcome> {
    const how = { shadow: true };
    const parts = encodeParts(this.manifest, this.split, this.request, pixels, {}, false);
    const request = assembleRequest(this.manifest, this.split, this.policy.thresholds, this.request, parts, how);
    return this.send(request, this.request.shadowTimeoutMs);
  }

  /** A hard frame's result: the cloud's answer, or the best local one with the fallback's reason. */
  private async offload(
    at: FrameAt,
    best: LocalAnswer,
    state: Record<string, StateTensor>,
    views: EdgeViews,
    allExits: boolean,
  ): Promise<EdgeResult> {
    const o = this.observer;
    const { manifest: m, split, request: settings } = this;
    const modes = this.policy.modes;
    const mode = modes?.choose() ?? requestMode(settings);
    const other = mode === 'state' ? 'image' : 'state';
    // Until both modes have been seen, the other's size is learnt too, from the same encoded tensors.
    const learn = modes !== undefined && !modes.seen(other);
    const parts = encodeParts(m, split, settings, at.frame.pixels, state, mode === 'state' || learn);
    const thresholds = this.policy.thresholds;
    const request = assembleRequest(m, split, thresholds, settings, parts, { allExits, mode });
    if (modes) {
      o.mode?.(mode);
      modes.note(mode, request.byteLength);
      if (learn) modes.note(other, assembleRequest(m, split, thresholds, settings, parts, { mode: other }).byteLength);
    }
    const sent = performance.now();
    const out = await this.send(request, settings.timeoutMs);
    o.offloaded?.(out, (performance.now() - sent) / 1000, at.frame);
    if (out.kind === 'answered') {
      if (out.exits?.length) o.cloudExits?.(views, out.exits);
      return { ...this.result(at, out.answer, 'cloud', 'offloaded', out.bytes), worker: out.worker };
    }
    const quiet = out.reason === 'timeout' || out.reason === 'no_responders'; // their reason says it all
    return {
      ...this.result(at, best, 'edge', 'fallback', out.bytes),
      fallback_reason: out.reason,
      ...(out.detail && !quiet ? { error: out.detail } : {}),
    };
  }

  private send(request: Uint8Array, timeoutMs: number): Promise<OffloadOutcome> {
    if (!this.transport) return Promise.resolve({ kind: 'fallback', reason: 'no_cloud', bytes: 0 });
    return this.transport.send(request, timeoutMs);
  }

  private result(at: FrameAt, d: LocalAnswer, tier: 'edge' | 'cloud', outcome: Outcome, bytes = 0): EdgeResult {
    const m = this.manifest;
    return {
      frame: at.frame.id,
      edge: this.request.edgeId,
      ...(at.frame.region !== undefined ? { region: at.frame.region } : {}),
      sequence: at.sequence,
      ...(at.frame.label !== undefined ? { label: at.frame.label } : {}),
      class: d.classIndex,
      class_name: m.classes[d.classIndex] ?? '',
      confidence: d.confidence,
      exit: d.exit,
      tier,
      outcome,
      latency_ms: performance.now() - at.started,
      offload_bytes: bytes,
      model_version: m.version,
    };
  }
}
