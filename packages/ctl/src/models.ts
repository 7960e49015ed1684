// `cascade model ...`: the model registry (a JetStream object store).
import { ConfigError } from '@cascade/proto';
import { defaultModelCache, fetchModel, listModels, MODEL_REF, pushModel, removeModel } from '@cascade/service';
import type { NatsConnection } from '@nats-io/transport-node';
import { formatModels } from './format.js';

/** `name@version`, or a ConfigError saying what a reference looks like. */
export function parseModelRef(ref: string): { name: string; version: string } {
  const m = MODEL_REF.exec(ref);
  if (!m) throw new ConfigError(`"${ref}" is not a model reference NAME@VERSION (see: cascade model ls)`);
  return { name: m[1]!, version: m[2]! };
}

export async function modelCommand(
  nc: NatsConnection,
  sub: string,
  arg: string | undefined,
  f: { cache?: string },
  out: (json: unknown, text: string) => void,
): Promise<void> {
  if (sub === 'push') {
    const r = await pushModel(nc, arg!);
    const sent = r.files.filter((x) => x.uploaded);
    const bytes = sent.reduce((a, x) => a + x.bytes, 0);
    out(r, `${r.name}@${r.version}: ${sent.length} of ${r.files.length} files uploaded (${bytes} bytes), the rest already there\n`); // prettier-ignore
  } else if (sub === 'ls') {
    const models = await listModels(nc);
    out(models, formatModels(models));
  } else if (sub === 'rm') {
    const { name, version } = parseModelRef(arg!);
    const n = await removeModel(nc, name, version);
    out({ name, version, removed: n }, `${name}@${version}: ${n} files removed\n`);
  } else {
    const { name, version } = parseModelRef(arg!);
    const r = await fetchModel(nc, name, version, f.cache ?? defaultModelCache());
    out(r, `${name}@${version}: ${r.dir} (from the ${r.from})\n`);
  }
}
