// The model registry: model directories in a JetStream object store, by name and version (the manifest's version,
// a content hash), each file checked against the manifest's SHA-256 on the way out, and a local cache that serves
// when NATS is away.
import { CascadeError, clip, ERROR_CODES, FLEET, type OptionSpecs } from '@cascade/proto';
import { jetstream } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createHash, randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { optionFlags, type Flag } from './flags.js';
import type { Log } from './link.js';
import { natsConnectOptions, type NatsAuth } from './nats-auth.js';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The model options of the commands that load a model (cascade-edge, cascade-cloud), and their flags. */
export const MODEL_OPTIONS = {
  model: {
    type: 'string',
    means: 'a model directory or NAME@VERSION',
    flag: 'model',
    env: 'CASCADE_MODEL',
    help: 'model directory, or NAME@VERSION from the model registry in NATS (fetched, checked against its hashes, cached; the cache serves while NATS is away) (required)',
  },
  modelCache: {
    type: 'string',
    flag: 'model-cache',
    env: 'CASCADE_MODEL_CACHE',
    defaultDoc: '$XDG_CACHE_HOME/cascade/models, else ~/.cache/cascade/models',
    help: 'where registry models are cached',
  },
} as const satisfies OptionSpecs;

export const MODEL_FLAGS = optionFlags(MODEL_OPTIONS) as { model: Flag; 'model-cache': Flag };

/** A model reference: `<name>@<version>`. */
export const MODEL_REF = /^([A-Za-z0-9_-]+)@([A-Za-z0-9_-]+)$/;

export class RegistryError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.MODEL_DIR, message, options);
  }
}

/** The files of a model the registry keeps: the manifest and its stage graphs (what edges and workers load). */
interface Stored {
  name: string;
  version: string;
  stages: { file: string; sha256: string }[];
}

function parseManifest(text: string, where: string): Stored {
  let m: Stored;
  try {
    m = JSON.parse(text) as Stored;
  } catch (err) {
    throw new RegistryError(`${where}: manifest.json is not JSON: ${(err as Error).message}`);
  }
  if (typeof m.name !== 'string' || typeof m.version !== 'string' || !Array.isArray(m.stages))
    throw new RegistryError(`${where}: manifest.json lacks name, version or stages`);
  for (const s of m.stages)
    if (typeof s.file !== 'string' || !/^[A-Za-z0-9._-]+$/.test(s.file) || typeof s.sha256 !== 'string')
      throw new RegistryError(`${where}: a stage has no plain file name or sha256`);
  return m;
}

const objectName = (name: string, version: string, file: string) => `${name}/${version}/${file}`;
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function store(nc: NatsConnection, create: boolean): Promise<ObjectStore> {
  // No check of the JetStream API ($JS.API.INFO) first: edges and workers may read the registry, not the account.
  const objm = new Objm(jetstream(nc, { checkAPI: false }));
  return create ? objm.create(FLEET.modelsBucket) : objm.open(FLEET.modelsBucket);
}

/** What a push did with each file. */
export interface PushResult {
  name: string;
  version: string;
  files: { file: string; bytes: number; uploaded: boolean }[];
}

/**
 * Uploads a model directory's manifest and stage graphs (creating the bucket when missing). Each stage must match
 * its SHA-256 in the manifest; a file already there with the same digest is not sent again.
 */
export async function pushModel(nc: NatsConnection, dir: string): Promise<PushResult> {
  const manifestText = await readFile(join(dir, 'manifest.json'), 'utf8').catch((err: Error) => {
    throw new RegistryError(`cannot read ${join(dir, 'manifest.json')}: ${err.message}`);
  });
  const m = parseManifest(manifestText, dir);
  const os = await store(nc, true);
  const files: PushResult['files'] = [];
  // `hex`: the file's SHA-256, computed once; the object store names digests in base64url.
  const put = async (file: string, data: Uint8Array, hex = sha256(data)) => {
    const name = objectName(m.name, m.version, file);
    const info = await os.info(name);
    const digest = `SHA-256=${Buffer.from(hex, 'hex').toString('base64url')}`;
    const same = info && !info.deleted && info.size === data.byteLength && info.digest.replace(/=+$/, '') === digest.replace(/=+$/, ''); // prettier-ignore
    if (!same) await os.putBlob({ name }, data);
    files.push({ file, bytes: data.byteLength, uploaded: !same });
  };
  for (const s of m.stages) {
    const data = await readFile(join(dir, s.file));
    if (sha256(data) !== s.sha256)
      throw new RegistryError(`${join(dir, s.file)} does not match its sha256 in the manifest: not pushed`);
    await put(s.file, data, s.sha256);
  }
  await put('manifest.json', Buffer.from(manifestText)); // last: a version is listed once all its stages are there
  return { name: m.name, version: m.version, files };
}

/** A model version in the registry. */
export interface RegistryEntry {
  name: string;
  version: string;
  files: number;
  bytes: number;
  /** When its manifest was pushed. */
  pushed: string;
}

/** Every model version whose manifest is in the registry. */
export async function listModels(nc: NatsConnection): Promise<RegistryEntry[]> {
  const os = await store(nc, false);
  const entries = new Map<string, RegistryEntry>();
  for (const info of await os.list()) {
    if (info.deleted) continue;
    const [name, version, file] = info.name.split('/');
    if (!name || !version || !file) continue;
    const key = `${name}@${version}`;
    const e = entries.get(key) ?? { name, version, files: 0, bytes: 0, pushed: '' };
    e.files++;
    e.bytes += info.size;
    if (file === 'manifest.json') e.pushed = info.mtime;
    entries.set(key, e);
  }
  return [...entries.values()].filter((e) => e.pushed).sort((a, b) => a.name.localeCompare(b.name) || a.pushed.localeCompare(b.pushed)); // prettier-ignore
}

/** Deletes a model version's objects; resolves with how many there were. */
export async function removeModel(nc: NatsConnection, name: string, version: string): Promise<number> {
  const os = await store(nc, false);
  const prefix = `${name}/${version}/`;
  let n = 0;
  // The manifest first: from then on the version is no longer listed or fetched.
  const objects = (await os.list()).filter((i) => !i.deleted && i.name.startsWith(prefix));
  objects.sort((a, b) => Number(b.name.endsWith('/manifest.json')) - Number(a.name.endsWith('/manifest.json')));
  for (const o of objects) {
    await os.delete(o.name);
    n++;
  }
  if (n === 0) throw new RegistryError(`${name}@${version} is not in the registry (see: cascade model ls)`);
  return n;
}

/** Where a model version is cached: `<cache>/<name>/<version>`. */
export function cachedModelDir(cache: string, name: string, version: string): string {
  return join(cache, name, version);
}

/**
 * A model version as a local directory: from the cache when it is there (every file checked against the manifest),
 * otherwise fetched from the registry into a temporary folder, each stage checked against the manifest's SHA-256, and
 * moved into the cache. Without NATS (`nc` undefined or the registry unreachable) only the cache serves. Throws a
 * RegistryError naming the model, the file and what is wrong.
 */
export async function fetchModel(
  nc: NatsConnection | undefined,
  name: string,
  version: string,
  cache: string,
): Promise<{ dir: string; from: 'cache' | 'registry' }> {
  const dir = cachedModelDir(cache, name, version);
  if (existsSync(join(dir, 'manifest.json'))) {
    const bad = await checkDir(dir);
    if (!bad) return { dir, from: 'cache' };
    await rm(dir, { recursive: true, force: true }); // a damaged copy is fetched again
  }
  if (!nc) throw new RegistryError(`${name}@${version} is not in the cache (${dir}) and NATS is not connected`);
  let os: ObjectStore;
  try {
    os = await store(nc, false);
    await os.status();
  } catch (err) {
    throw new RegistryError(`the model registry (${FLEET.modelsBucket}) is unreachable: ${clip((err as Error).message, 200)}`, { cause: err }); // prettier-ignore
  }
  const get = async (file: string) => {
    const data = await os.getBlob(objectName(name, version, file)).catch((err: Error) => {
      throw new RegistryError(`${name}@${version}: ${file} could not be read from the registry: ${clip(err.message, 200)}`); // prettier-ignore
    });
    if (!data) throw new RegistryError(`${name}@${version}: ${file} is not in the registry (see: cascade model ls)`);
    return data;
  };
  const manifestBytes = await get('manifest.json');
  const m = parseManifest(Buffer.from(manifestBytes).toString('utf8'), `${name}@${version}`);
  if (m.name !== name || m.version !== version)
    throw new RegistryError(`${name}@${version}: the registry's manifest says ${m.name}@${m.version}: refused`);
  const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
  await mkdir(tmp, { recursive: true });
  try {
    for (const s of m.stages) {
      const data = await get(s.file);
      if (sha256(data) !== s.sha256)
        throw new RegistryError(`${name}@${version}: ${s.file} from the registry does not match its sha256 in the manifest (a corrupted or replaced object): refused`); // prettier-ignore
      await writeFile(join(tmp, s.file), data);
    }
    await writeFile(join(tmp, 'manifest.json'), manifestBytes);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { dir, from: 'registry' };
}

/** What is wrong with a cached copy (undefined when every stage matches the manifest). */
async function checkDir(dir: string): Promise<string | undefined> {
  try {
    const m = parseManifest(await readFile(join(dir, 'manifest.json'), 'utf8'), dir);
    for (const s of m.stages) if (sha256(await readFile(join(dir, s.file))) !== s.sha256) return `${s.file} differs`;
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** The default model cache: `$XDG_CACHE_HOME/cascade/models`, else `~/.cache/cascade/models`. */
export function defaultModelCache(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'cascade', 'models');
}

/**
 * The local directory of a `--model` value: a directory as it is; `NAME@VERSION` (when no such directory exists)
 * from the registry over a short connection of its own, or from the cache when NATS cannot be reached in
 * `connectMs`. Throws a RegistryError when neither has it.
 */
export async function resolveModel(
  spec: string,
  o: { servers?: string; auth?: NatsAuth; cache?: string; connectMs?: number; log?: Log },
): Promise<string> {
  const ref = MODEL_REF.exec(spec);
  if (!ref || existsSync(spec)) return spec;
  const [name, version] = [ref[1]!, ref[2]!];
  const cache = o.cache ?? defaultModelCache();
  let nc: NatsConnection | undefined;
  if (o.servers) {
    try {
      nc = await connect({
        servers: o.servers.split(','),
        name: 'cascade model fetch',
        timeout: o.connectMs ?? 5000,
        ...natsConnectOptions(o.auth),
      });
    } catch (err) {
      o.log?.('model_registry_unreachable', { model: spec, error: clip((err as Error).message, 200), cache });
    }
  }
  try {
    const r = await fetchModel(nc, name, version, cache);
    o.log?.('model_resolved', { model: spec, dir: r.dir, from: r.from });
    return r.dir;
  } finally {
    await nc?.close();
  }
}
