// What the `cascade` command does with the fleet's buckets, as functions (the CLI formats their results).
import { parseCamera } from '@cascade/cameras';
import {
  checkEdgeSettings,
  ConfigError,
  configKey,
  EDGE_ID,
  FLEET,
  parseEdgeSettings,
  type EdgeHeartbeat,
  type EdgeSettings,
} from '@cascade/proto';
import { ensureFleetBuckets, openBucket } from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';

/** Every edge in the registry (those that sent a heartbeat within FLEET.edgeTtlMs), by id. */
export async function listFleet(nc: NatsConnection): Promise<EdgeHeartbeat[]> {
  const kv = await openBucket(nc, FLEET.edgesBucket);
  const out: EdgeHeartbeat[] = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (!e || e.operation !== 'PUT') continue;
    try {
      out.push(JSON.parse(e.string()) as EdgeHeartbeat);
    } catch {
      // an entry that is not JSON is not an edge's: skip it
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** The settings key of `target`: an edge id, or "default" for the whole fleet. */
export function keyOf(target: string): string {
  if (!EDGE_ID.test(target))
    throw new ConfigError(`"${target}" is not an edge id (letters, digits, - and _, parts joined by dots) or default`);
  return target === 'default' ? configKey.default : configKey.edge(target);
}

/** The stored settings of `target` and their revision (empty and 0 when none are stored). */
export async function getSettings(
  nc: NatsConnection,
  target: string,
): Promise<{ key: string; settings: EdgeSettings; revision: number }> {
  const key = keyOf(target);
  const kv = await openBucket(nc, FLEET.configBucket);
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT') return { key, settings: {}, revision: 0 };
  return { key, settings: parseEdgeSettings(e.string(), key), revision: e.revision };
}

/**
 * Parses `name=value` assignments: the value as JSON where it is one (numbers, true, false, lists), else as a string;
 * an empty value removes the setting.
 */
export function parseAssignments(args: string[]): { set: Record<string, unknown>; unset: string[] } {
  const set: Record<string, unknown> = {};
  const unset: string[] = [];
  for (const a of args) {
    const at = a.indexOf('=');
    if (at <= 0) throw new ConfigError(`"${a}" is not name=value`);
    const name = a.slice(0, at);
    const text = a.slice(at + 1);
    if (text === '') {
      unset.push(name);
      continue;
    }
    try {
      set[name] = JSON.parse(text);
    } catch {
      set[name] = text;
    }
  }
  return { set, unset };
}

/**
 * Changes some settings of `target`, keeping the others, with a compare-and-set on the revision read (a concurrent
 * change makes it fail rather than be overwritten). Checks the result first; creates the buckets when missing.
 */
export async function setSettings(
  nc: NatsConnection,
  target: string,
  assignments: string[],
): Promise<{ key: string; settings: EdgeSettings; revision: number }> {
  const key = keyOf(target);
  const { set, unset } = parseAssignments(assignments);
  await ensureFleetBuckets(nc);
  const current = await getSettings(nc, target);
  const next: Record<string, unknown> = { ...current.settings, ...set };
  for (const name of unset) delete next[name];
  const settings = checkEdgeSettings(next, key);
  // A camera is checked as the agent will read it, so a typo is refused here and not on the camera's site.
  if (settings.camera !== undefined) parseCamera(target.split('.').pop()!, settings.camera);
  const kv = await openBucket(nc, FLEET.configBucket);
  const text = JSON.stringify(settings);
  const revision = current.revision ? await kv.update(key, text, current.revision) : await kv.create(key, text);
  return { key, settings, revision };
}

/** Removes `target`'s settings (the edge falls back to the fleet default and its own options). */
export async function removeSettings(nc: NatsConnection, target: string): Promise<string> {
  const key = keyOf(target);
  const kv = await openBucket(nc, FLEET.configBucket);
  await kv.delete(key);
  return key;
}
