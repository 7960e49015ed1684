import { describe, expect, it } from 'vitest';
import { FlagError, flagSource, numberFlag, parseFlags, type Flag } from './flags.js';

const TABLE = {
  nats: { type: 'string', env: 'NATS_URL', help: 'url' },
  'nats-user': { type: 'string', env: 'NATS_USER', help: 'user' },
  'metrics-port': { type: 'string', help: 'port' },
} as const satisfies Record<string, Flag>;

describe('flags - one table, command line before environment', () => {
  it('takes the command line first, then the variable, and negative numbers as values', () => {
    const f = parseFlags(TABLE, ['--metrics-port', '-1', '--nats-user', 'cam'], {
      NATS_URL: 'nats://x:1',
      NATS_USER: 'env',
    });
    expect(f).toEqual({ nats: 'nats://x:1', 'nats-user': 'cam', 'metrics-port': '-1' });
    expect(numberFlag('metrics-port', f['metrics-port'])).toBe(-1);
    expect(() => numberFlag('metrics-port', 'abc')).toThrow(FlagError);
    expect(() => parseFlags(TABLE, ['--bogus'])).toThrow(FlagError);
  });

  it('says where a value came from, not mistaking a longer flag for it', () => {
    expect(flagSource(TABLE, 'nats', ['--nats', 'u'], {})).toBe('--nats');
    expect(flagSource(TABLE, 'nats', ['--nats=u'], {})).toBe('--nats');
    expect(flagSource(TABLE, 'nats', ['--nats-user', 'x'], { NATS_URL: 'u' })).toBe('$NATS_URL');
    expect(flagSource(TABLE, 'nats', ['--nats-user', 'x'], {})).toBe('the default (set --nats or $NATS_URL)');
  });
});
