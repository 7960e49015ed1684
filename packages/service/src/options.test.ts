import { compileOptions, liveOptions, optionDefaults, type OptionSpecs } from '@cascade/proto';
import { describe, expect, it } from 'vitest';
import { flagTable, optionFlags, optionsFromFlags, parseFlags } from './flags.js';

const SPEC = {
  depth: { type: 'int', min: 1, max: 8, default: 3, flag: 'depth', env: 'T_DEPTH', help: 'how deep' },
  rate: { type: 'number', min: 0, max: 1, default: 0.5, flag: 'rate', live: 'rate_live', help: 'a share' },
  mode: { type: 'choice', choices: ['a', 'b'], default: 'a', flag: 'mode', help: 'a or b' },
  on: { type: 'switch', default: true, flag: 'on', help: 'on or off' },
  ageMs: { type: 'int', min: 1, default: 60_000, flag: 'age-s', flagScale: 1000, help: 'seconds' },
  size: { type: 'bytes', default: 2 * 1024 ** 2, flag: 'size', help: 'a size' },
  window: { type: 'duration', flag: 'window', help: 'a duration' },
  list: { type: 'numbers', flag: 'list', help: 'numbers' },
  codeOnly: { type: 'int', min: 0, default: 7, help: 'no flag' },
} as const satisfies OptionSpecs;

describe('option specs', () => {
  it('defaults, and every value checked against its bounds, naming the option', () => {
    expect(optionDefaults(SPEC)).toEqual({ depth: 3, rate: 0.5, mode: 'a', on: true, ageMs: 60_000, size: 2097152, codeOnly: 7 }); // prettier-ignore
    expect(compileOptions(SPEC, { depth: 8, list: [1, 2] })).toMatchObject({ depth: 8, rate: 0.5, list: [1, 2] });
    expect(() => compileOptions(SPEC, { depth: 9 })).toThrow('depth must be an integer from 1 to 8, got 9');
    expect(() => compileOptions(SPEC, { depth: 2.5 })).toThrow('depth must be an integer from 1 to 8, got 2.5');
    expect(() => compileOptions(SPEC, { rate: 2 })).toThrow('rate must be a number from 0 to 1, got 2');
    expect(() => compileOptions(SPEC, { mode: 'c' as never })).toThrow('mode must be one of a, b, got c');
    expect(() => compileOptions(SPEC, { on: 'yes' as never })).toThrow('on must be true or false, got "yes"');
  });

  it('flags: converted to their type (seconds, sizes, durations, on/off, lists) and checked, naming the flag', () => {
    const parse = (argv: string[], env = {}) => optionsFromFlags(SPEC, parseFlags(optionFlags(SPEC), argv, env));
    expect(parse(['--age-s', '90', '--size', '1GiB', '--window', '10m', '--on', 'off', '--list', '0.5,1'])).toEqual({
      ageMs: 90_000,
      size: 1024 ** 3,
      window: 600_000,
      on: false,
      list: [0.5, 1],
    });
    expect(parse([], { T_DEPTH: '5' })).toEqual({ depth: 5 });
    expect(() => parse(['--depth', '0'])).toThrow('--depth must be an integer from 1 to 8, got 0');
    expect(() => parse(['--depth', 'deep'])).toThrow('--depth: "deep" is not a number');
    expect(() => parse(['--on', 'yes'])).toThrow('--on must be on or off, got yes');
    expect(() => parse(['--code-only', '1'])).toThrow(); // no flag for it
  });

  it('the README table lists each flag with its variable, default and help; live options by setting', () => {
    const table = flagTable(SPEC).split('\n');
    expect(table).toContain('| `--depth` | `T_DEPTH` | 3 | how deep |');
    expect(table).toContain('| `--age-s` |  | 60 | seconds |');
    expect(table).toContain('| `--size` |  | 2MiB | a size |');
    expect(table).toContain('| `--on` |  | `on` | on or off |');
    expect(table.some((l) => l.includes('codeOnly') || l.includes('code-only'))).toBe(false);
    expect(liveOptions(SPEC)).toEqual({ rate_live: { option: 'rate', spec: SPEC.rate } });
  });
});
