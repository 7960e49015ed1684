// The READMEs' flag tables are the commands' option specs: a table that differs from its spec fails here (write
// them with scripts/flag-tables).
import { WORKER_FLAG_TABLE } from '@cascade/cloud/cli';
import { EDGE_FLAG_TABLE } from '@cascade/edge/cli';
import { withFlagTable } from '@cascade/service';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './harness.js';

describe('flag tables', () => {
  it.each([
    ['packages/edge/README.md', 'cascade-edge', EDGE_FLAG_TABLE],
    ['packages/cloud/README.md', 'cascade-cloud', WORKER_FLAG_TABLE],
  ])('%s: the table of %s is its option spec (scripts/flag-tables writes it)', (readme, command, table) => {
    const text = readFileSync(join(REPO, readme), 'utf8');
    expect(withFlagTable(text, command, table), `${readme} differs from the spec: run scripts/flag-tables`).toBe(text);
  });

  it('a table that differs is found', () => {
    const readme = 'x\n<!-- flags: c -->\n| old |\n<!-- /flags -->\ny';
    expect(withFlagTable(readme, 'c', '| new |')).toBe('x\n<!-- flags: c -->\n| new |\n<!-- /flags -->\ny');
    expect(() => withFlagTable('no markers', 'c', '| t |')).toThrow(/no "<!-- flags: c -->"/);
  });
});
