// Runs once around the whole test run: every temporary file or folder the tests and the processes they start make
// goes under one folder of this run (TMPDIR), removed at the end, pass or fail, so a run leaves nothing behind.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'cascade-test-run-'));
  process.env.TMPDIR = root;
  return () => rmSync(root, { recursive: true, force: true });
}
