import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { checkManifest, ModelDirError, type Manifest, type ModelDir } from './manifest-core.js';

export * from './manifest-core.js';

/**
 * Reads and checks `<path>/manifest.json`: required keys, format, stage chaining, and (by default) each stage
 * file's SHA-256. Throws ModelDirError naming what is wrong.
 */
export async function loadModelDir(path: string, options: { verifyHashes?: boolean } = {}): Promise<ModelDir> {
  const folder = resolve(path);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8'));
  } catch (err) {
    throw new ModelDirError(`cannot read ${join(folder, 'manifest.json')}: ${(err as Error).message}`, { cause: err });
  }
  const manifest: Manifest = checkManifest(parsed, `${folder}/manifest.json`);
  if (options.verifyHashes ?? true) {
    for (const s of manifest.stages) {
      const bytes = await readFile(join(folder, s.file)).catch((err: Error) => {
        throw new ModelDirError(`stage ${s.index}: cannot read ${s.file}: ${err.message}`, { cause: err });
      });
      const digest = createHash('sha256').update(bytes).digest('hex');
      if (digest !== s.sha256)
        throw new ModelDirError(`stage ${s.index}: ${s.file} does not match its sha256 in the manifest`);
    }
  }
  return { path: folder, manifest };
}
