import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  CascadeError,
  checkOption,
  ERROR_CODES,
  type OptionSpec,
  type OptionSpecs,
  type OptionsOf,
} from '@cascade/proto';

/** Whether the module at `url` is the program being run (not imported, e.g. by a test). */
export function isMain(url: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(url));
  } catch {
    return false;
  }
}

/** One command-line flag, declared once: its type, the environment variable that may set it, and its help. */
export interface Flag {
  type: 'string' | 'boolean';
  /** May be given more than once: its values, in order, joined by newlines (its variable: one per line). */
  multiple?: boolean;
  env?: string;
  help: string;
}

export class FlagError extends CascadeError {
  constructor(message: string, options?: ErrorOptions) {
    super(ERROR_CODES.USAGE, message, options);
  }
}

/** Values by flag name: command line first, then the flag's environment variable. */
export function parseFlags<T extends Record<string, Flag>>(
  table: T,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : string } {
  const options = Object.fromEntries(Object.entries(table).map(([k, f]) => [k, { type: f.type, multiple: f.multiple ?? false }])); // prettier-ignore
  // `--metrics-port -1`: parseArgs takes a value that starts with a dash for another flag; join negative numbers.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    if (a.startsWith('--') && table[a.slice(2)]?.type === 'string' && next !== undefined && /^-\d/.test(next)) {
      args.push(`${a}=${next}`);
      i++;
    } else {
      args.push(a);
    }
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args, options: options as never, strict: true, allowPositionals: false }).values as never;
  } catch (err) {
    throw new FlagError((err as Error).message, { cause: err });
  }
  const out: Record<string, string | boolean> = {};
  for (const [k, f] of Object.entries(table)) {
    const given = values[k] as string | boolean | string[] | undefined;
    const v = Array.isArray(given) ? given.join('\n') : (given ?? (f.env ? env[f.env] : undefined));
    if (v !== undefined) out[k] = v;
  }
  return out as never;
}

/** Where a flag's value came from, for messages: `--name` when given, `$VAR` when its variable set it, else the default. */
export function flagSource(
  table: Record<string, Flag>,
  name: string,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`))) return `--${name}`;
  const variable = table[name]?.env;
  if (variable && env[variable]) return `$${variable}`;
  return variable ? `the default (set --${name} or $${variable})` : `the default (set --${name})`;
}

/** A number flag's value, or undefined; throws FlagError naming the flag. */
export function numberFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new FlagError(`--${name}: "${v}" is not a number`);
  return n;
}

export function usage(command: string, table: Record<string, Flag>): string {
  const lines = Object.entries(table).map(
    ([name, f]) => `  --${name.padEnd(20)} ${f.help}${f.env ? ` [$${f.env}]` : ''}`,
  );
  return `usage: ${command}\n${lines.join('\n')}\n`;
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 }; // prettier-ignore

/** A size flag (`500MiB`, `20GB`, `1073741824`) in bytes, or undefined; throws FlagError naming the flag. */
export function bytesFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || Number(m[1]) <= 0)
    throw new FlagError(`--${name}: "${v}" is not a size (a number of bytes, or with a unit: 500MiB, 20GB, 1TiB)`);
  return Math.round(Number(m[1]) * unit);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration in the largest unit that divides it (`7d`, `10m`, `1500ms`). */
function durationText(ms: number): string {
  const [unit, size] = Object.entries(DURATION_UNITS)
    .reverse()
    .find(([, size]) => ms % size === 0)!;
  return `${ms / size}${unit}`;
}

/** A duration flag (`90s`, `10m`, `12h`, `7d`, `1500ms`) in ms, or undefined; throws FlagError naming the flag. */
export function durationFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/i.exec(v);
  if (!m || Number(m[1]) <= 0)
    throw new FlagError(`--${name}: "${v}" is not a duration (a number with ms, s, m, h or d: 90s, 10m, 12h, 7d)`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** The command-line flags of the options in `spec` that have one (values as strings, parsed by optionsFromFlags). */
export function optionFlags<T extends OptionSpecs>(spec: T): Record<string, Flag> {
  const out: Record<string, Flag> = {};
  for (const s of Object.values(spec))
    if (s.flag) out[s.flag] = { type: 'string', ...(s.env ? { env: s.env } : {}), help: flagHelp(s) };
  return out;
}

function flagHelp(s: OptionSpec): string {
  const def = s.defaultDoc ?? (s.default === undefined ? undefined : defaultText(s));
  return def === undefined ? s.help : `${s.help} (default: ${def})`;
}

/** An option's default as its flag would give it (a size in MiB, seconds for a flag in seconds). */
function defaultText(s: OptionSpec): string {
  if (s.type === 'switch') return s.default ? 'on' : 'off';
  if (s.type === 'numbers') return (s.default ?? []).join(',');
  if (s.type === 'bytes') return s.default! % 1024 ** 2 === 0 ? `${s.default! / 1024 ** 2}MiB` : String(s.default);
  if (s.type === 'duration') return durationText(s.default!);
  if (s.type === 'int' || s.type === 'number') return String(s.default! / (s.flagScale ?? 1));
  return String(s.default);
}

/**
 * The options set by flags (parsed by parseFlags from `optionFlags(spec)`), each converted to its type and checked
 * against its spec; a FlagError names the flag.
 */
export function optionsFromFlags<T extends OptionSpecs>(
  spec: T,
  values: Record<string, string | boolean | undefined>,
): OptionsOf<T> {
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(spec)) {
    const v = s.flag ? values[s.flag] : undefined;
    if (typeof v !== 'string') continue;
    const name = `--${s.flag}`;
    let value: unknown;
    switch (s.type) {
      case 'int':
      case 'number':
        value = numberFlag(s.flag!, v)! * (s.flagScale ?? 1);
        break;
      case 'bytes':
        value = bytesFlag(s.flag!, v);
        break;
      case 'duration':
        value = durationFlag(s.flag!, v);
        break;
      case 'switch':
        if (v !== 'on' && v !== 'off') throw new FlagError(`${name} must be on or off, got ${v}`);
        value = v === 'on';
        break;
      case 'numbers':
        value = v.split(',').map((x, i) => numberFlag(`${s.flag}[${i}]`, x));
        break;
      default:
        value = v;
    }
    try {
      out[k] = checkOption(name, s, value);
    } catch (err) {
      throw new FlagError((err as Error).message, { cause: err });
    }
  }
  return out as OptionsOf<T>;
}

/** A README table of a command's flags: flag, environment variable, default, meaning; options first. */
export function flagTable(spec: OptionSpecs, flags: Record<string, Flag & { defaultDoc?: string }> = {}): string {
  const cell = (s: string) => s.replaceAll('|', '\\|').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
  const code = (s: string) => `\`${s}\``;
  const rows = ['| flag | env | default | meaning |', '|---|---|---|---|'];
  const row = (flag: string, env: string | undefined, def: string, help: string) =>
    rows.push(`| ${code(`--${flag}`)} | ${env ? code(env) : ''} | ${def} | ${cell(help)} |`);
  for (const s of Object.values(spec)) {
    if (!s.flag) continue;
    const literal = s.type === 'choice' || s.type === 'string' || s.type === 'switch';
    const def = s.defaultDoc ? cell(s.defaultDoc) : s.default === undefined ? '—' : literal ? code(defaultText(s)) : defaultText(s); // prettier-ignore
    row(s.flag, s.env, def, s.help);
  }
  for (const [name, f] of Object.entries(flags)) row(name, f.env, f.defaultDoc ? cell(f.defaultDoc) : '—', f.help);
  return rows.join('\n');
}

/**
 * `readme` with COMMAND's flag table between `<!-- flags: COMMAND -->` and `<!-- /flags -->` replaced by `table`;
 * throws when the markers are missing.
 */
export function withFlagTable(readme: string, command: string, table: string): string {
  const open = `<!-- flags: ${command} -->`;
  const start = readme.indexOf(open);
  const end = readme.indexOf('<!-- /flags -->', start);
  if (start < 0 || end < 0) throw new Error(`no "${open}" ... "<!-- /flags -->" in the README`);
  return `${readme.slice(0, start + open.length)}\n${table}\n${readme.slice(end)}`;
}
