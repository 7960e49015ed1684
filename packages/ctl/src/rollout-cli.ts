// `cascade rollout ...`: argument handling and printing around rollout.ts.
import { ConfigError, EDGE_ID } from '@cascade/proto';
import { numberFlag } from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';
import { parseModelRef } from './models.js';
import { fleetOf, readRollout, rollout } from './rollout.js';

export async function rolloutCommand(
  nc: NatsConnection,
  words: string[],
  f: { canary?: string; edges?: string; undo?: boolean; 'timeout-s'?: string; json?: boolean },
  out: (json: unknown, text: string) => void,
): Promise<void> {
  const [first, second] = words;
  if (first === 'status') {
    const model = second!;
    const { rollout: stored, revision } = await readRollout(nc, model);
    const { workers, edges } = await fleetOf(nc, model);
    const byVersion = new Map<string, string[]>();
    for (const e of edges) byVersion.set(e.model_version, [...(byVersion.get(e.model_version) ?? []), e.id]);
    const text = [
      stored ? `rollout (revision ${revision}): ${JSON.stringify({ ...stored, previous: undefined })}` : `no rollout of ${model} stored`, // prettier-ignore
      ...(stored?.previous ? [`before it: ${JSON.stringify(stored.previous)}`] : []),
      `workers: ${workers.size ? [...workers].map(([w, vs]) => `${w} serves ${vs.join(', ')}`).join('; ') : 'none answers'}`,
      `edges: ${edges.length ? [...byVersion].map(([v, ids]) => `${v}: ${ids.join(', ')}`).join('; ') : 'none in the registry'}`,
      ...edges.filter((e) => e.model_error).map((e) => `  ${e.id} refused ${e.model_target}: ${e.model_error}`),
    ].join('\n');
    out({ rollout: stored ?? null, revision, workers: Object.fromEntries(workers), edges }, `${text}\n`);
    return;
  }
  const timeoutS = numberFlag('timeout-s', f['timeout-s']) ?? 120;
  if (!(timeoutS > 0)) throw new ConfigError(`--timeout-s must be > 0, got ${timeoutS}`);
  const canary = numberFlag('canary', f.canary?.replace(/%$/, ''));
  if (canary !== undefined && !(canary >= 0 && canary <= 100))
    throw new ConfigError(`--canary must be a share from 0 to 100, got ${f.canary}`);
  const edges = f.edges ? f.edges.split(',').filter(Boolean) : undefined;
  for (const id of edges ?? []) if (!EDGE_ID.test(id)) throw new ConfigError(`--edges: "${id}" is not an edge id`);
  let model: string;
  let version: string | undefined;
  if (f.undo) {
    if (first!.includes('@')) throw new ConfigError('cascade rollout --undo takes a model name, not NAME@VERSION');
    model = first!;
  } else ({ name: model, version } = parseModelRef(first!));
  const report = await rollout(nc, {
    model,
    ...(version ? { version } : {}),
    ...(canary !== undefined ? { canary } : {}),
    ...(edges ? { edges } : {}),
    undo: Boolean(f.undo),
    timeoutMs: timeoutS * 1000,
    progress: (line) => !f.json && process.stdout.write(`${line}\n`),
  });
  out(
    report,
    `${model}: rolled ${f.undo ? 'back' : 'out'} in ${report.steps.reduce((a, s) => a + s.seconds, 0).toFixed(1)} s\n` +
      `  workers: ${report.workers.join('; ') || 'none'}\n  edges: ${report.edges.join('; ') || 'none'}\n`,
  );
}
