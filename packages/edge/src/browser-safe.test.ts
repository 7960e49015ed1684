// The modules a browser page shares with the Node edge (the model's contract, the exit rule, the wire format and
// request building, results delivery) must not reach Node or a Node-only package: this walks their compiled import graph.
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const PACKAGES = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const NODE_ONLY = ['onnxruntime-node', '@nats-io/transport-node', 'prom-client', 'worker_threads'];

/** The dist file a workspace import (`@cascade/x` or `@cascade/x/sub`) resolves to, from the package's exports. */
function workspaceFile(spec: string): string {
  const [, pkg, sub] = /^@cascade\/([^/]+)(?:\/(.+))?$/.exec(spec)!;
  const manifest = JSON.parse(readFileSync(join(PACKAGES, pkg!, 'package.json'), 'utf8')) as {
    exports: Record<string, { default: string }>;
  };
  const entry = manifest.exports[sub ? `./${sub}` : '.'];
  if (!entry) throw new Error(`${spec}: not exported by @cascade/${pkg}`);
  return join(PACKAGES, pkg!, entry.default);
}

/** Every file reached from `entry` and every import leaving the workspace, with the file that made it. */
function importGraph(entry: string): { files: string[]; external: { spec: string; from: string }[] } {
  const files = new Set<string>();
  const external: { spec: string; from: string }[] = [];
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(
      /(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g,
    )) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
      else if (spec.startsWith('@cascade/')) visit(workspaceFile(spec));
      else external.push({ spec, from: file });
    }
  };
  visit(entry);
  return { files: [...files], external };
}

describe('modules shared with a browser page', () => {
  it.each([
    '@cascade/edge/path',
    '@cascade/edge/transport',
    '@cascade/edge/local',
    '@cascade/edge/request',
    '@cascade/edge/delivery',
    '@cascade/runtime/core',
    '@cascade/proto',
  ])('%s reaches nothing Node-only', (spec) => {
    const { files, external } = importGraph(workspaceFile(spec));
    const nodeOnly = external.filter(
      ({ spec: s }) =>
        s.startsWith('node:') || builtinModules.includes(s) || NODE_ONLY.some((n) => s === n || s.startsWith(`${n}/`)),
    );
    expect(nodeOnly).toEqual([]);
    expect(files.length).toBeGreaterThan(1);
  });

  it('the check finds a Node import where there is one', () => {
    const { external } = importGraph(workspaceFile('@cascade/runtime'));
    expect(external.map((e) => e.spec)).toContain('node:crypto');
  });
});
