// `cascade rollout`: moves a model's fleet from one version to another in the order a split model needs. Workers
// first serve both versions, then the edges switch, then the workers drop the version no edge runs; each step waits
// until every worker and edge says it has taken it (service discovery, the edges' registry), so no hard frame meets a
// worker without its version. `--undo` makes the same moves back to the rollout before.
import {
  ConfigError,
  configKey,
  edgeVersion,
  FLEET,
  parseModelRollout,
  type EdgeHeartbeat,
  type ModelRollout,
} from '@cascade/proto';
import { ensureFleetBuckets, fetchModel, listModels, openBucket } from '@cascade/service';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Svcm } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { listFleet } from './fleet.js';

/** A rollout without the one before it. */
type Placement = Omit<ModelRollout, 'previous' | 'note'>;

export interface RolloutRequest {
  model: string;
  /** The version to roll out; undefined with `undo`. */
  version?: string;
  /** Only a share of the edges (0-100), and/or these edges, run the new version; the rest keep theirs. */
  canary?: number;
  edges?: string[];
  /** Go back to the rollout before the current one. */
  undo?: boolean;
  /** Longest wait for each step. */
  timeoutMs: number;
  /** How often the fleet is read while waiting. */
  pollMs?: number;
  progress: (line: string) => void;
}

export interface RolloutReport {
  model: string;
  from: Placement | undefined;
  to: Placement;
  /** Seconds each step took. */
  steps: { step: string; seconds: number }[];
  workers: string[];
  edges: string[];
}

/** What serves and runs the model now: versions by worker id (service discovery) and edges (the registry). */
export async function fleetOf(
  nc: NatsConnection,
  model: string,
): Promise<{ workers: Map<string, string[]>; edges: EdgeHeartbeat[] }> {
  const workers = new Map<string, string[]>();
  const client = new Svcm(nc).client({ strategy: 'stall', maxWait: 1000 });
  for await (const info of await client.info('cascade-worker')) {
    const md = info.metadata ?? {};
    if (md.model !== model || !md.worker || !md.model_version) continue;
    workers.set(md.worker, [...(workers.get(md.worker) ?? []), md.model_version].sort());
  }
  const edges = (await listFleet(nc).catch(() => [])).filter((e) => e.model === model);
  return { workers, edges };
}

/** The stored rollout of `model` and its revision (undefined and 0 when there is none). */
export async function readRollout(
  nc: NatsConnection,
  model: string,
): Promise<{ rollout?: ModelRollout; revision: number }> {
  const key = configKey.model(model);
  const kv = await openBucket(nc, FLEET.configBucket);
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT') return { revision: 0 };
  return { rollout: parseModelRollout(e.string(), key), revision: e.revision };
}

const strip = (r: ModelRollout | Placement): Placement => ({
  workers: [...r.workers],
  edges: r.edges,
  ...(r.canary ? { canary: r.canary } : {}),
});
const unique = (xs: string[]) => [...new Set(xs)];

/** Every version some edge runs under a placement. */
function edgeVersions(p: Placement): string[] {
  return unique([p.edges, ...(p.canary ? [p.canary.version] : [])]);
}

/**
 * Runs a rollout (or its undo) to the end, printing each step; resolves with what it did. Throws a ConfigError naming
 * the workers or edges that did not take a step; what has been done stays, and says how to go on or back.
 */
export async function rollout(nc: NatsConnection, r: RolloutRequest): Promise<RolloutReport> {
  const key = configKey.model(r.model);
  await ensureFleetBuckets(nc);
  const kv = await openBucket(nc, FLEET.configBucket);
  const { rollout: stored, revision: read } = await readRollout(nc, r.model);
  let revision = read;
  const now = await fleetOf(nc, r.model);
  // Without a stored rollout, the fleet as it runs is where it starts.
  const from: Placement | undefined = stored ? strip(stored) : inferPlacement(now.workers, now.edges);
  let to: Placement;
  if (r.undo) {
    if (!stored?.previous) throw new ConfigError(`${r.model} has no rollout before the current one to go back to`);
    to = strip(stored.previous);
  } else {
    const version = r.version!;
    const known = (await listModels(nc).catch(() => [])).some((m) => m.name === r.model && m.version === version);
    if (!known) throw new ConfigError(`${r.model}@${version} is not in the model registry (cascade model push DIR; cascade model ls)`); // prettier-ignore
    const canary = r.canary !== undefined || r.edges?.length;
    if (canary && !from) throw new ConfigError(`a canary needs a version the rest of the fleet runs: none runs ${r.model} yet`); // prettier-ignore
    to = canary
      ? {
          workers: unique([from!.edges, version]),
          edges: from!.edges,
          canary: { version, ...(r.canary !== undefined ? { percent: r.canary } : {}), ...(r.edges?.length ? { edges: r.edges } : {}) }, // prettier-ignore
        }
      : { workers: [version], edges: version };
  }
  // Every version that is new to the fleet is read back and checked against its manifest before anything changes.
  const fresh = unique([...to.workers, ...edgeVersions(to)]).filter((v) => !from?.workers.includes(v));
  for (const v of fresh) {
    const dir = await mkdtemp(join(tmpdir(), 'cascade-rollout-'));
    try {
      await fetchModel(nc, r.model, v, dir);
    } catch (err) {
      throw new ConfigError(`${(err as Error).message}; nothing was changed`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    r.progress(`checked ${r.model}@${v}: every file matches its manifest`);
  }
  const previous = from;
  const steps: RolloutReport['steps'] = [];
  const write = async (p: Placement, note: string) => {
    const value: ModelRollout = { ...p, ...(previous ? { previous } : {}), note: `${note} ${new Date().toISOString()}` }; // prettier-ignore
    const text = JSON.stringify(value);
    revision = revision ? await kv.update(key, text, revision) : await kv.create(key, text);
  };
  /** When the step under way began (heartbeats sent before it say nothing of it). */
  let since = 0;
  const step = async (name: string, p: Placement, done: (f: Awaited<ReturnType<typeof fleetOf>>) => string | true) => {
    const started = performance.now();
    since = Date.now();
    await write(p, name);
    r.progress(`${name}: ${JSON.stringify(strip(p))}`);
    const deadline = started + r.timeoutMs;
    let last = '';
    for (;;) {
      const verdict = done(await fleetOf(nc, r.model));
      if (verdict === true) break;
      if (verdict.startsWith('refused:') || performance.now() > deadline)
        throw new ConfigError(`${name}: ${verdict.replace(/^refused: /, '')}${performance.now() > deadline ? ` after ${Math.round(r.timeoutMs / 1000)} s` : ''}`); // prettier-ignore
      if (verdict !== last) r.progress(`  waiting: ${verdict}`);
      last = verdict;
      await new Promise((resolve) => setTimeout(resolve, r.pollMs ?? 250));
    }
    const seconds = Math.round((performance.now() - started) / 100) / 10;
    steps.push({ step: name, seconds });
    r.progress(`  done in ${seconds} s`);
  };

  // 1. Workers serve every version an edge runs now or will run.
  const both: Placement = {
    ...(from ?? to),
    workers: unique([...(from?.workers ?? []), ...to.workers, ...edgeVersions(to)]),
  };
  const serving = (need: string[], exactly: boolean) => (f: Awaited<ReturnType<typeof fleetOf>>) => {
    if (f.workers.size === 0) return 'no worker of the model answers service discovery';
    const short = [...f.workers].filter(([, vs]) => need.some((v) => !vs.includes(v)) || (exactly && vs.some((v) => !need.includes(v)))); // prettier-ignore
    return short.length === 0 ? true : short.map(([w, vs]) => `${w} serves ${vs.join(', ')}`).join('; ');
  };
  await step('workers add', both, serving(both.workers, false));
  // 2. Edges switch (or the canary's do); an edge that refuses keeps its version, which the workers still serve.
  const onEdges: Placement = { ...to, workers: both.workers };
  await step('edges switch', onEdges, (f) => {
    const refused = f.edges.filter((e) => e.model_error && e.model_target === edgeVersion(to, e.id) && e.sent_unix_ms >= since); // prettier-ignore
    if (refused.length) return `refused: ${refused.map((e) => `${e.id}: ${e.model_error}`).join('; ')}; those edges keep ${r.model}@${refused[0]!.model_version}, still served (cascade rollout --undo ${r.model} goes back)`; // prettier-ignore
    const behind = f.edges.filter((e) => e.model_version !== edgeVersion(to, e.id));
    return behind.length === 0 ? true : behind.map((e) => `${e.id} runs ${e.model_version}`).join('; ');
  });
  // 3. Workers drop what no edge runs.
  await step('workers drop', to, serving(to.workers, true));
  const end = await fleetOf(nc, r.model);
  return {
    model: r.model,
    from,
    to,
    steps,
    workers: [...end.workers].map(([w, vs]) => `${w}: ${vs.join(', ')}`),
    edges: end.edges.map((e) => `${e.id}: ${e.model_version}`),
  };
}

/** The placement the fleet shows: what its workers serve, and the version most of its edges run. */
function inferPlacement(workers: Map<string, string[]>, edges: EdgeHeartbeat[]): Placement | undefined {
  const served = unique([...workers.values()].flat());
  const counts = new Map<string, number>();
  for (const e of edges) counts.set(e.model_version, (counts.get(e.model_version) ?? 0) + 1);
  const top = [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? served[0];
  if (!top) return undefined;
  return { workers: served.length ? served : [top], edges: top };
}
