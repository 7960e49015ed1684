import { describe, expect, it } from 'vitest';
import { CodecError } from './codec.js';
import { CascadeError, ConfigError, ERROR_CODES, exitStatus } from './errors.js';

describe('errors - one taxonomy', () => {
  it('every error has a stable code, its class name and its cause', () => {
    const cause = new Error('disk');
    const e = new ConfigError('split 9: the model has 3 stages', { cause });
    expect(e).toBeInstanceOf(CascadeError);
    expect(e.code).toBe('CONFIG');
    expect(e.name).toBe('ConfigError');
    expect(e.cause).toBe(cause);
    expect(new CodecError('x').code).toBe(ERROR_CODES.CODEC);
  });

  it('exit status: 2 for what the command was asked wrongly, 1 for failures while running', () => {
    for (const code of ['USAGE', 'CONFIG', 'MODEL_DIR', 'SOURCE'] as const)
      expect(exitStatus(new CascadeError(code, ''))).toBe(2);
    for (const code of ['CODEC', 'INFERENCE', 'NATS', 'DEPENDENCY', 'STATE'] as const)
      expect(exitStatus(new CascadeError(code, ''))).toBe(1);
    expect(exitStatus(new Error('anything else'))).toBe(1);
  });
});
