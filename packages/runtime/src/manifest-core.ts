// The model directory's manifest: its types and every check that needs no file system, shared by the Node edge and
// worker and by anything that loads a model some other way (a browser page over HTTP). loadModelDir (manifest.ts)
// reads a directory from disk and checks its stage files' hashes.
import { CascadeError, ConfigError, ERROR_CODES } from '@cascade/proto';

export const MODEL_FORMAT = 'cascade-model/1';

export interface TensorSpec {
  name: string;
  dtype: 'uint8' | 'float32';
  /** Batch dimension is -1. */
  shape: number[];
}

export interface StageSpec {
  index: number;
  file: string;
  sha256: string;
  macs: number;
  exits: number[];
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

export interface ExitSpec {
  index: number;
  stage: number;
  output: string;
  macs: number;
}

export interface OperatingPoint {
  name: string;
  thresholds: number[];
  val_accuracy: number;
  expected_macs: number;
  edge_exit_rate: number;
  /** Accuracy below the last exit the calibration allowed on the validation split (0.005 = 0.5 points). */
  max_drop?: number;
  /** The same thresholds measured on the test set (written by the exporter). */
  test?: { accuracy: number; expected_macs: number; edge_exit_rate: number };
}

export interface Manifest {
  format: string;
  name: string;
  version: string;
  input: { name: string; dtype: 'uint8'; shape: number[]; layout: 'NCHW'; mean: number[]; std: number[] };
  classes: string[];
  stages: StageSpec[];
  exits: ExitSpec[];
  operating_points: OperatingPoint[];
  default_operating_point?: string;
  default_split?: number;
  eval: Record<string, unknown>;
  training: Record<string, unknown>;
}

/** A model directory: its folder and its manifest, checked. */
export interface ModelDir {
  path: string;
  manifest: Manifest;
}

export class ModelDirError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.MODEL_DIR, message, options);
  }
}

const REQUIRED = ['format', 'name', 'version', 'input', 'classes', 'stages', 'exits', 'operating_points'] as const;

/**
 * Checks a parsed manifest (`where` names it in errors): required keys, format, stage chaining, one threshold per
 * exit in every operating point. Throws ModelDirError naming what is wrong.
 */
export function checkManifest(value: unknown, where: string): Manifest {
  if (typeof value !== 'object' || value === null) throw new ModelDirError(`${where}: not a JSON object`);
  const manifest = value as Manifest;
  for (const key of REQUIRED) {
    if (!(key in manifest)) throw new ModelDirError(`${where}: missing required key "${key}"`);
  }
  if (manifest.format !== MODEL_FORMAT) {
    throw new ModelDirError(`${where}: format "${manifest.format}" is not ${MODEL_FORMAT}`);
  }
  checkChaining(manifest, where);
  return manifest;
}

function checkChaining(m: Manifest, folder: string): void {
  const produced = new Set<string>();
  m.stages.forEach((s, i) => {
    if (s.index !== i) throw new ModelDirError(`${folder}: stage ${i} has index ${s.index}`);
    for (const t of s.inputs) {
      if (t.name !== m.input.name && !produced.has(t.name)) {
        throw new ModelDirError(`${folder}: stage ${i} input "${t.name}" is produced by no earlier stage`);
      }
    }
    for (const t of s.outputs) produced.add(t.name);
  });
  for (const op of m.operating_points) {
    if (op.thresholds.length !== m.exits.length) {
      throw new ModelDirError(
        `${folder}: operating point "${op.name}" has ${op.thresholds.length} thresholds for ${m.exits.length} exits`,
      );
    }
  }
}

/** The named operating point's thresholds; throws naming the ones the manifest has. */
export function operatingPoint(m: Manifest, name?: string): OperatingPoint {
  const wanted = name ?? m.default_operating_point ?? m.operating_points[0]?.name;
  const op = m.operating_points.find((o) => o.name === wanted);
  if (!op) {
    const names = m.operating_points.map((o) => o.name).join(', ');
    throw new ConfigError(`operating point "${String(wanted)}" is not in the manifest; it has: ${names}`);
  }
  return op;
}

/** Names of the carried-state tensors that stage `stage` hands to the next one. */
export function carriedOutputs(m: Manifest, stage: number): TensorSpec[] {
  const s = m.stages[stage];
  if (!s) throw new ModelDirError(`no stage ${stage}: the model has ${m.stages.length}`);
  const logits = new Set(s.exits.map((e) => m.exits[e]?.output));
  return s.outputs.filter((t) => !logits.has(t.name));
}
