// The browser edge: a model directory loaded over HTTP (every stage checked against the manifest's SHA-256), its
// edge stages run with onnxruntime-web, and each frame decided by the same code as the Node edge's
// (@cascade/edge/local over @cascade/runtime/core).
import { runEdgeStages, type LocalOutcome, type RunStage } from '@cascade/edge/local';
import { checkManifest, operatingPoint, type Manifest } from '@cascade/runtime/core';
import * as ort from 'onnxruntime-web/wasm';

export interface BrowserEdgeOptions {
  /** An operating point of the model. @default the manifest's default */
  operatingPoint?: string;
}

const hex = (buf: ArrayBuffer) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r;
}

export class BrowserEdge {
  private constructor(
    readonly manifest: Manifest,
    readonly split: number,
    readonly thresholds: number[],
    private readonly sessions: ort.InferenceSession[],
  ) {}

  /** Loads the model at `base` (a URL of a model directory); throws naming what is wrong. */
  static async load(base: string, o: BrowserEdgeOptions = {}): Promise<BrowserEdge> {
    ort.env.wasm.numThreads = 1; // threads need a cross-origin isolated page
    const where = `${base}/manifest.json`;
    const manifest = checkManifest(await (await fetchOk(where)).json(), where);
    const split = manifest.default_split ?? 1;
    const thresholds = [...operatingPoint(manifest, o.operatingPoint).thresholds];
    const sessions: ort.InferenceSession[] = [];
    for (const stage of manifest.stages.slice(0, split)) {
      const bytes = await (await fetchOk(`${base}/${stage.file}`)).arrayBuffer();
      const digest = hex(await crypto.subtle.digest('SHA-256', bytes));
      if (digest !== stage.sha256) throw new Error(`${base}/${stage.file} does not match its sha256 in the manifest`);
      sessions.push(await ort.InferenceSession.create(new Uint8Array(bytes), { executionProviders: ['wasm'] }));
    }
    return new BrowserEdge(manifest, split, thresholds, sessions);
  }

  /** The edge's decision on one frame (uint8 pixels in the model's input layout). */
  classify(pixels: Uint8Array): Promise<LocalOutcome> {
    const run: RunStage = async (stage, feeds) => {
      const inputs: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds))
        inputs[name] = new ort.Tensor(t.data instanceof Uint8Array ? 'uint8' : 'float32', t.data, t.dims);
      const out = await this.sessions[stage]!.run(inputs);
      return Object.fromEntries(
        Object.entries(out).map(([name, t]) => [name, { data: t.data as Float32Array, dims: [...t.dims] }]),
      );
    };
    return runEdgeStages(this.manifest, this.split, this.thresholds, pixels, run);
  }
}
