// The shape of the code: no import cycle among the source files of any package (type imports count too: a cycle of
// types is still a knot a reader must untie), and no package imports one above it.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './harness.js';

const PACKAGES = join(REPO, 'packages');

/** The source files of a package (tests left out) and the files of the same package each one imports. */
function sourceGraph(pkg: string): Map<string, string[]> {
  const src = join(PACKAGES, pkg, 'src');
  const files = readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.tsx?$/.test(f) && !f.endsWith('.test.ts') && !f.includes('gen/'))
    .map((f) => join(src, f));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const deps = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*['"](\.[^'"]+)['"]/g)].map((m) =>
      resolve(dirname(file), m[1]!).replace(/\.js$/, '.ts'),
    );
    graph.set(
      file,
      deps.filter((d) => files.includes(d)),
    );
  }
  return graph;
}

/** One cycle of the graph, as the files around it, or undefined. */
function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): string[] | undefined => {
    if (state.get(f) === 'done') return undefined;
    if (state.get(f) === 'open') return [...stack.slice(stack.indexOf(f)), f];
    state.set(f, 'open');
    stack.push(f);
    for (const d of graph.get(f) ?? []) {
      const c = visit(d);
      if (c) return c;
    }
    stack.pop();
    state.set(f, 'done');
    return undefined;
  };
  for (const f of graph.keys()) {
    const c = visit(f);
    if (c) return c;
  }
  return undefined;
}

describe('architecture', () => {
  const packages = readdirSync(PACKAGES).filter((p) => !p.startsWith('.'));

  it.each(packages)('no import cycle among the source files of @cascade/%s', (pkg) => {
    const cycle = findCycle(sourceGraph(pkg));
    expect(cycle?.map((f) => relative(REPO, f)).join(' -> ')).toBeUndefined();
  });

  it('the check finds a cycle where there is one', () => {
    const a = join(REPO, 'a.ts');
    const b = join(REPO, 'b.ts');
    expect(
      findCycle(
        new Map([
          [a, [b]],
          [b, [a]],
        ]),
      ),
    ).toEqual([a, b, a]);
    expect(
      findCycle(
        new Map([
          [a, [b]],
          [b, []],
        ]),
      ),
    ).toBeUndefined();
  });
});
