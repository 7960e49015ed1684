// The fleet's configuration and registry in NATS key-value buckets: the contract between edges, workers and the
// `cascade` operator command.
import { ConfigError } from './errors.js';
import { checkOption, liveOptions, type OptionSpecs, type OptionValue } from './options.js';

export const FLEET = {
  /** Settings: `edges.default` for the whole fleet, `edges.<edge-id>` for one edge; JSON `EdgeSettings`. */
  configBucket: 'cascade-config',
  /** Registry: one key per edge id, a JSON `EdgeHeartbeat`; a key not refreshed within `edgeTtlMs` goes away. */
  edgesBucket: 'cascade-edges',
  /** Model registry (an object store): `<name>/<version>/<file>`, the manifest and its stage graphs. */
  modelsBucket: 'cascade-models',
  heartbeatMs: 5000,
  edgeTtlMs: 30_000,
  /** Revisions of a setting kept (for `cascade config history`). */
  configHistory: 10,
} as const;

/**
 * An edge id: one NATS subject token (`cam-1`, on one machine), or several joined by dots, in a fleet
 * `<site>.<agent>.<camera>` (`site-a.agent-1.cam-1`), so that one permission such as
 * `cascade.v1.results.site-a.agent-1.*` covers every camera of an agent, and `cascade.v1.results.site-a.>` a site.
 */
export const EDGE_ID = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

export const configKey = {
  default: 'edges.default',
  edge: (id: string): string => `edges.${id}`,
  /** The rollout of a model (`ModelRollout`): what its workers serve and its edges run. */
  model: (name: string): string => `models.${name}`,
};

/**
 * The edge options an operator may also set while the edge runs, for the whole fleet or one edge (`live`: the
 * setting's name in `EdgeSettings`). Declared here, in the fleet's contract, once: the edge's option spec includes
 * them, and the settings are checked against them.
 */
export const EDGE_LIVE_OPTIONS = {
  operatingPoint: {
    type: 'string',
    pattern: /^[A-Za-z0-9_-]{1,64}$/,
    means: 'a name',
    flag: 'operating-point',
    env: 'CASCADE_OPERATING_POINT',
    live: 'operating_point',
    defaultDoc: "the manifest's default",
    help: 'threshold set from the manifest',
  },
  thresholds: {
    type: 'numbers',
    flag: 'thresholds',
    env: 'CASCADE_THRESHOLDS',
    live: 'thresholds',
    help: 'comma-separated thresholds, one per exit; overrides the operating point',
  },
  shadowRate: {
    type: 'number',
    min: 0,
    max: 1,
    default: 0.02,
    flag: 'shadow-rate',
    env: 'CASCADE_SHADOW_RATE',
    live: 'shadow_rate',
    help: "share of frames also finished to the last exit, to measure the edge exits' accuracy; 0 turns it off",
  },
  controller: {
    type: 'switch',
    default: false,
    flag: 'controller',
    env: 'CASCADE_CONTROLLER',
    live: 'controller',
    help: 'on: move the thresholds to hold the accuracy budget at the lowest offload rate, and shed load under pressure',
  },
  accuracyBudget: {
    type: 'number',
    min: 0,
    max: 1,
    flag: 'accuracy-budget',
    env: 'CASCADE_ACCURACY_BUDGET',
    live: 'accuracy_budget',
    defaultDoc: "the operating point's max_drop, else 0.005",
    help: 'accuracy the controller may give up against the last exit (0.005: half a point)',
  },
  latencyTargetMs: {
    type: 'number',
    min: 0,
    max: 3_600_000,
    default: 500,
    flag: 'latency-target-ms',
    env: 'CASCADE_LATENCY_TARGET_MS',
    live: 'latency_target_ms',
    help: 'offload p95 above which the controller sheds load; 0: not watched',
  },
  bandwidthBytesPerS: {
    type: 'number',
    min: 0,
    default: 0,
    flag: 'bandwidth-budget',
    env: 'CASCADE_BANDWIDTH_BUDGET',
    live: 'bandwidth_bytes_per_s',
    help: 'offload bytes per second the controller keeps under; 0: no limit',
  },
} as const satisfies OptionSpecs;

type LiveOf<T> = {
  -readonly [K in keyof T as T[K] extends { live: infer L extends string } ? L : never]?: OptionValue<T[K]>;
};

/**
 * What an operator may set for an edge (or the fleet): every field optional, a missing one keeps the edge's own.
 * `camera` is no option of the agent's but the camera itself, on a camera's key of an agent that runs cameras:
 * its source and cut as `--camera` takes them after `ID=` (the agent starts, changes or stops the camera).
 */
export type EdgeSettings = LiveOf<typeof EDGE_LIVE_OPTIONS> & { camera?: string };

/** The setting that is a camera (checked in full by @cascade/cameras where it is set and where it runs). */
export const CAMERA_SETTING = 'camera';

const LIVE = liveOptions(EDGE_LIVE_OPTIONS);

/** The setting names, in the order they are documented. */
export const EDGE_SETTINGS = [...Object.keys(LIVE), CAMERA_SETTING] as (keyof EdgeSettings)[];

/** A key's value as JSON, or a ConfigError naming the key. */
function parseValue(text: string, key: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${key}: not JSON: ${(err as Error).message}`);
  }
}

/** Parses and checks one key's value; a ConfigError names the key, the field and what it must be. */
export function parseEdgeSettings(text: string, key: string): EdgeSettings {
  return checkEdgeSettings(parseValue(text, key), key);
}

/** Checks a parsed value; unknown fields are refused, so a misspelt setting is not silently ignored. */
export function checkEdgeSettings(v: unknown, key: string): EdgeSettings {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${key}: must be a JSON object`);
  for (const [name, value] of Object.entries(v)) {
    if (name === CAMERA_SETTING) {
      checkCameraSetting(value, key);
      continue;
    }
    const live = LIVE[name];
    if (!live) throw new ConfigError(`${key}: unknown setting "${name}"; the settings are ${EDGE_SETTINGS.join(', ')}`);
    try {
      checkOption(name, live.spec, value);
    } catch (err) {
      throw new ConfigError(`${key}: ${(err as Error).message}`);
    }
  }
  return v as EdgeSettings;
}

/** A camera setting: text, on one camera's key, and no password in it (passwords come from the agent's secrets). */
function checkCameraSetting(value: unknown, key: string): void {
  if (typeof value !== 'string' || !value.trim() || value.length > 4096)
    throw new ConfigError(`${key}: camera must be its source and cut as text, e.g. "rtsp://viewer@10.0.0.5/live fps=5"`); // prettier-ignore
  if (key === configKey.default) throw new ConfigError(`${key}: a camera is set on its own key (edges.<agent>.<camera>), not for the fleet`); // prettier-ignore
  if (/:\/\/[^/@\s:]+:[^/@\s]*@/.test(value))
    throw new ConfigError(`${key}: camera: a password does not go into the fleet's settings; name the user only (rtsp://USER@HOST/...) and give the agent the password as a secret (--camera-password-dir)`); // prettier-ignore
}

/** An edge's entry in the registry, refreshed every `FLEET.heartbeatMs`. */
export interface EdgeHeartbeat {
  id: string;
  run: string;
  model: string;
  model_version: string;
  /** The operating point in force ('custom' for thresholds). */
  operating_point: string;
  thresholds: number[];
  controller: boolean;
  binding: string;
  shadow_rate: number;
  frames: number;
  /** Share of the last window's frames offloaded. */
  offload_rate: number;
  /** Estimated accuracy loss against the last exit (null without shadow records). */
  estimated_loss: number | null;
  /** Share of shadow records whose answer is the last exit's (null without records). */
  agreement: number | null;
  /** The settings revision applied, and the last one refused with why. */
  config_revision: number;
  config_error?: string;
  /** The version the model's rollout asks this edge to run, and why it does not, when it could not switch. */
  model_target?: string;
  model_error?: string;
  sent_unix_ms: number;
}

/** A model version as the registry names it (the manifest's version). */
const VERSION = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Which versions of one model run where, under `models.<name>` in the settings bucket; written by `cascade rollout`.
 * A split model's halves must match, so a rollout moves in steps: workers serve the old and the new version, then
 * the edges switch, then the workers drop the old one.
 */
export interface ModelRollout {
  /** Versions every worker of the model serves (loads and answers), at least one. */
  workers: string[];
  /** The version edges run, unless the canary picks them. */
  edges: string;
  /** Some edges run another version: those named, and a share of the rest chosen by their id (`canaryShare`). */
  canary?: { version: string; percent?: number; edges?: string[] };
  /** The rollout this one replaced (`cascade rollout --undo` goes back to it). */
  previous?: Omit<ModelRollout, 'previous'>;
  /** Who wrote it and when, for `cascade rollout --status`. */
  note?: string;
}

/** Checks a parsed `models.<name>` value; a ConfigError names the key, the field and what it must be. */
export function checkModelRollout(v: unknown, key: string, nested = false): ModelRollout {
  const bad = (field: string, want: string, got: unknown): never => {
    throw new ConfigError(`${key}: ${field} must be ${want}, got ${JSON.stringify(got)}`);
  };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError(`${key}: must be a JSON object`);
  const r = v as Record<string, unknown>;
  const fields = ['workers', 'edges', 'canary', 'note', ...(nested ? [] : ['previous'])];
  for (const name of Object.keys(r))
    if (!fields.includes(name)) throw new ConfigError(`${key}: unknown field "${name}"; the fields are ${fields.join(', ')}`); // prettier-ignore
  const w = r.workers;
  if (!Array.isArray(w) || w.length === 0 || w.length > 8 || !w.every((x) => typeof x === 'string' && VERSION.test(x)))
    bad('workers', 'a list of 1 to 8 versions', w);
  if (typeof r.edges !== 'string' || !VERSION.test(r.edges)) bad('edges', 'a version', r.edges);
  if (r.canary !== undefined) {
    const c = r.canary as Record<string, unknown>;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) bad('canary', 'an object', c);
    if (typeof c.version !== 'string' || !VERSION.test(c.version)) bad('canary.version', 'a version', c.version);
    if (c.percent !== undefined && !(typeof c.percent === 'number' && c.percent >= 0 && c.percent <= 100))
      bad('canary.percent', 'a number from 0 to 100', c.percent);
    if (
      c.edges !== undefined &&
      !(Array.isArray(c.edges) && c.edges.every((x) => typeof x === 'string' && EDGE_ID.test(x)))
    )
      // prettier-ignore
      bad('canary.edges', 'a list of edge ids', c.edges);
  }
  if (r.note !== undefined && typeof r.note !== 'string') bad('note', 'a string', r.note);
  if (r.previous !== undefined) checkModelRollout(r.previous, `${key}: previous`, true);
  return v as ModelRollout;
}

/** Parses and checks a `models.<name>` value. */
export function parseModelRollout(text: string, key: string): ModelRollout {
  return checkModelRollout(parseValue(text, key), key);
}

/**
 * Where an edge falls in a canary, 0 to 100: a hash of its id (FNV-1a), so the same edges are picked on every edge,
 * by the operator's command and across restarts, and raising the share only adds edges.
 */
export function canaryShare(edgeId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < edgeId.length; i++) h = Math.imul(h ^ edgeId.charCodeAt(i), 0x01000193) >>> 0;
  return (h % 10_000) / 100;
}

/** The version an edge runs under a rollout. */
export function edgeVersion(r: Omit<ModelRollout, 'previous'>, edgeId: string): string {
  const c = r.canary;
  if (c && (c.edges?.includes(edgeId) || canaryShare(edgeId) < (c.percent ?? 0))) return c.version;
  return r.edges;
}
