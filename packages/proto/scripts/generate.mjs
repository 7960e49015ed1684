// Generates src/gen/cascade.js (static protobufjs code, ESM) and its .d.ts from proto/cascade.proto.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);
const out = join(root, 'src', 'gen');
mkdirSync(out, { recursive: true });
execFileSync(
  bin('pbjs'),
  [
    '-t',
    'static-module',
    '-w',
    'es6',
    '--es6',
    '--force-number',
    '--no-verify',
    '--no-delimited',
    '--no-convert',
    '--no-beautify',
    '-o',
    join(out, 'cascade.js'),
    join(root, 'proto', 'cascade.proto'),
  ],
  { stdio: 'inherit' },
);
execFileSync(bin('pbts'), ['-o', join(out, 'cascade.d.ts'), join(out, 'cascade.js')], { stdio: 'inherit' });
