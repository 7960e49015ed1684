// Options declared once: a spec per option (type, default, bounds, flag, environment variable, fleet setting, help)
// from which a command's option types, defaults, checks, flag parsing, fleet-setting checks and README flag table
// are all derived. Browser-safe: the fleet's settings are checked with it too.
import { ConfigError } from './errors.js';

interface Common {
  help: string;
  /** The command-line flag (without `--`); none: the option is set in code only. */
  flag?: string;
  /** The environment variable that sets the flag. */
  env?: string;
  /** How the README states the default when it is not the value itself (a path, "the manifest's"). */
  defaultDoc?: string;
  /** The fleet setting (`EdgeSettings`) that changes it while the edge runs. */
  live?: string;
  /** The flag's value times this is the option's (seconds on the command line, ms in the option). @default 1 */
  flagScale?: number;
}

export type OptionSpec = Common &
  (
    | { type: 'int'; min: number; max?: number; default?: number }
    | { type: 'number'; min?: number; max?: number; default?: number }
    | { type: 'bytes'; default?: number }
    | { type: 'duration'; default?: number }
    | { type: 'choice'; choices: readonly string[]; default?: string }
    | { type: 'switch'; default?: boolean }
    | { type: 'string'; pattern?: RegExp; means?: string; default?: string }
    | { type: 'numbers'; default?: readonly number[] }
  );

export type OptionSpecs = Record<string, OptionSpec>;

/** The value an option takes. */
export type OptionValue<S> = S extends { type: 'int' | 'number' | 'bytes' | 'duration' }
  ? number
  : S extends { type: 'choice'; choices: readonly (infer C)[] }
    ? C
    : S extends { type: 'switch' }
      ? boolean
      : S extends { type: 'numbers' }
        ? number[]
        : string;

/** What a caller may set: every option optional. */
export type OptionsOf<T extends OptionSpecs> = { -readonly [K in keyof T]?: OptionValue<T[K]> };

/** After compileOptions: options with a default always set, the others maybe. */
export type CompiledOptionsOf<T extends OptionSpecs> = {
  -readonly [K in keyof T as T[K] extends { default: unknown } ? K : never]: OptionValue<T[K]>;
} & { -readonly [K in keyof T as T[K] extends { default: unknown } ? never : K]?: OptionValue<T[K]> };

/** The defaults of the options that have one. */
export function optionDefaults<T extends OptionSpecs>(spec: T): CompiledOptionsOf<T> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out[k] = s.default;
  return out as CompiledOptionsOf<T>;
}

/** What a value of the spec must be, in words ("an integer from 2 to 8"). */
export function expected(s: OptionSpec): string {
  switch (s.type) {
    case 'int':
      return s.max === undefined ? `an integer >= ${s.min}` : `an integer from ${s.min} to ${s.max}`;
    case 'number':
      if (s.min !== undefined && s.max !== undefined) return `a number from ${s.min} to ${s.max}`;
      return s.min !== undefined ? `a number >= ${s.min}` : s.max !== undefined ? `a number <= ${s.max}` : 'a number';
    case 'bytes':
      return 'a size in bytes > 0';
    case 'duration':
      return 'a duration in ms > 0';
    case 'choice':
      return `one of ${s.choices.join(', ')}`;
    case 'switch':
      return 'true or false';
    case 'string':
      return s.means ?? 'a string';
    case 'numbers':
      return 'a list of numbers';
  }
}

/** Whether `v` is a value of the spec. */
function fits(s: OptionSpec, v: unknown): boolean {
  const inRange = (x: number, min?: number, max?: number) =>
    Number.isFinite(x) && (min === undefined || x >= min) && (max === undefined || x <= max);
  switch (s.type) {
    case 'int':
      return typeof v === 'number' && Number.isInteger(v) && inRange(v, s.min, s.max);
    case 'number':
      return typeof v === 'number' && inRange(v, s.min, s.max);
    case 'bytes':
    case 'duration':
      return typeof v === 'number' && Number.isInteger(v) && v > 0;
    case 'choice':
      return typeof v === 'string' && s.choices.includes(v);
    case 'switch':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string' && (s.pattern ? s.pattern.test(v) : v.length > 0);
    case 'numbers':
      return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isFinite(x));
  }
}

/** `v` when it fits the spec; otherwise a ConfigError: "`name` must be …, got …". */
export function checkOption<T>(name: string, s: OptionSpec, v: T): T {
  if (!fits(s, v)) {
    const got =
      typeof v === 'string' && s.type === 'choice' ? v : typeof v === 'number' ? String(v) : JSON.stringify(v);
    throw new ConfigError(`${name} must be ${expected(s)}, got ${got}`);
  }
  return v;
}

/** Every option of `o` checked against its spec (errors name the option), with the defaults filled in. */
export function compileOptions<T extends OptionSpecs>(spec: T, o: OptionsOf<T>): CompiledOptionsOf<T> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) {
    const v = (o as Record<string, unknown>)[k] ?? s.default;
    if (v !== undefined) out[k] = checkOption(k, s, v);
  }
  return out as CompiledOptionsOf<T>;
}

/** The options of `spec` that fleet settings change, by setting name. */
export function liveOptions(spec: OptionSpecs): Record<string, { option: string; spec: OptionSpec }> {
  const out: Record<string, { option: string; spec: OptionSpec }> = {};
  for (const [k, s] of Object.entries(spec)) if (s.live) out[s.live] = { option: k, spec: s };
  return out;
}
