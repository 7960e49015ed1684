// What goes into the edge and what comes out: a frame, and the one result it yields.
import type { FallbackReason } from './request.js';

/** One frame as the edge takes it in: planar uint8 pixels [3, H, W]. */
export interface Frame {
  id: string;
  pixels: Uint8Array;
  /** Ground truth, when the source has it (CIFAR files). */
  label?: number;
  capturedUnixMs: number;
  /** The camera's region of interest it was cut from; none for the whole frame. */
  region?: string;
}

export type Outcome = 'exited' | 'offloaded' | 'fallback' | 'error';

/** The one result every frame yields. */
export interface EdgeResult {
  frame: string;
  edge: string;
  /** The camera's region of interest the frame was cut from, when the camera has regions. */
  region?: string;
  /** n-th frame this edge took in (from 1); with the edge's run id it names the result in the results stream. */
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
