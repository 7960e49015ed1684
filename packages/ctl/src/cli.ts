#!/usr/bin/env node
// cascade: the operator command. Lists the fleet, reads and writes its settings in NATS, keeps the model registry and
// rolls model versions out.
import { ConfigError, EDGE_SETTINGS, exitStatus, redactSecrets } from '@cascade/proto';
import { join } from 'node:path';
import {
  FlagError,
  flagSource,
  isMain,
  NATS_AUTH_FLAGS,
  natsAuthFromFlags,
  NatsLink,
  parseFlags,
  usage,
  type Flag,
} from '@cascade/service';
import { getSettings, listFleet, removeSettings, setSettings } from './fleet.js';
import { formatFleet } from './format.js';
import { deviceCommand } from './device-cli.js';
import { AuthDir } from './devices.js';
import { modelCommand } from './models.js';
import { rolloutCommand } from './rollout-cli.js';

const FLAGS = {
  nats: { type: 'string', env: 'NATS_URL', help: 'NATS server URL(s) (default nats://127.0.0.1:4222)' },
  ...NATS_AUTH_FLAGS,
  json: { type: 'boolean', help: 'print JSON instead of a table' },
  cache: {
    type: 'string',
    env: 'CASCADE_MODEL_CACHE',
    help: 'model cache of cascade model fetch (default $XDG_CACHE_HOME/cascade/models, else ~/.cache/...)',
  },
  canary: { type: 'string', help: 'cascade rollout: the share of edges (0-100) that run the new version' },
  edges: { type: 'string', help: 'cascade rollout: these edges (comma-separated ids) run the new version' },
  undo: { type: 'boolean', help: 'cascade rollout: go back to the rollout before the current one' },
  'timeout-s': { type: 'string', help: 'cascade rollout: longest wait for each step (default 120)' },
  auth: {
    type: 'string',
    env: 'CASCADE_AUTH_DIR',
    help: 'the keys of cascade auth init (operator mode): cascade device needs them, and the command then logs in as monitor',
  },
  'resolver-dir': {
    type: 'string',
    help: "cascade auth init: where the servers' resolver keeps the accounts, on their machines (default DIR/jwt)",
  },
  'site-path': {
    type: 'string',
    help: "cascade auth site: where the site's folder will be on its machine (default: where it is written)",
  },
  out: { type: 'string', help: 'cascade device add: where to write the credentials (default AUTH/devices/ID.creds)' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

const COMMANDS = `commands:
  cascade fleet                          the edges in the registry: model, operating point, offload rate,
                                         agreement with the last exit, estimated loss, controller, last seen
  cascade config get [EDGE|default]      the stored settings of an edge, or of the whole fleet (default)
  cascade config set EDGE|default NAME=VALUE ...
                                         change settings (an empty VALUE removes one); edges apply them live
  cascade config rm EDGE|default         remove an edge's (or the fleet's) settings
  cascade model push DIR                 upload a model directory (manifest and stage graphs) to the registry
  cascade model ls                       the model versions in the registry
  cascade model rm NAME@VERSION          delete a model version from the registry
  cascade model fetch NAME@VERSION [--cache DIR]
                                         download a version into the local cache, every file checked
  cascade rollout NAME@VERSION [--canary PERCENT] [--edges ID,...]
                                         run a version on the fleet: workers serve it beside the old one, the
                                         edges (or the canary's) switch, workers drop what no edge runs;
                                         each step waits until every worker and edge has taken it
  cascade rollout --undo NAME            the same steps back to the rollout before
  cascade rollout status NAME            the stored rollout, and what each worker serves and edge runs
  cascade auth init DIR                  operator mode: an operator, its accounts, server.conf for nats-server,
                                         and the credentials of the system user, workers and operators
  cascade auth site SITE                 a camera site in operator mode (--auth DIR): its nats-server's
                                         configuration and leaf-link credentials; devices log in there too
  cascade device add SITE.AGENT          credentials for an edge agent (--auth DIR): its cameras SITE.AGENT.*
                                         may publish their own results and read their own inboxes, nothing else
  cascade device ls                      the devices issued, and those revoked
  cascade device revoke SITE.AGENT       refuse a device from now on: the servers close its connections
settings: ${EDGE_SETTINGS.join(', ')}
`;
const USAGE = `${usage('cascade COMMAND [ARGS] [options]', FLAGS)}${COMMANDS}`;

/** Splits the command line into words (command and arguments) and flags. */
export function splitArgs(argv: string[]): { words: string[]; flags: string[] } {
  const words: string[] = [];
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      words.push(a);
      continue;
    }
    flags.push(a);
    const name = a.slice(2);
    if (!a.includes('=') && (FLAGS as Record<string, Flag>)[name]?.type === 'string' && i + 1 < argv.length)
      flags.push(argv[++i]!);
  }
  return { words, flags };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { words, flags } = splitArgs(argv);
  let f: ReturnType<typeof parseFlags<typeof FLAGS>>;
  try {
    f = parseFlags(FLAGS, flags);
    if (!f.help) check(words);
  } catch (err) {
    process.stderr.write(`cascade: ${redactSecrets((err as Error).message)}\n${USAGE}`);
    process.exit(2);
  }
  if (f.help || words.length === 0) {
    process.stdout.write(USAGE);
    return;
  }
  if (words[0] === 'auth') {
    try {
      if (words[1] === 'site') {
        if (!f.auth) throw new ConfigError('cascade auth site needs --auth DIR (the keys of cascade auth init)');
        const out = await AuthDir.open(f.auth).site(words[2]!, f['site-path']);
        process.stdout.write(`${out}: site.conf for the site's nats-server, leaf.creds, leaf-sys.creds (copy the folder to the site${f['site-path'] ? `, at ${f['site-path']}` : ''})\n`); // prettier-ignore
      } else {
        const a = await AuthDir.init(words[2]!, f['resolver-dir']);
        process.stdout.write(
          `${a.dir}: server.conf for nats-server (include it), sys.creds, worker.creds, monitor.creds\n`,
        );
      }
    } catch (err) {
      process.stderr.write(`cascade: ${redactSecrets((err as Error).message)}\n`);
      process.exit(exitStatus(err));
    }
    return;
  }
  const auth = natsAuthFromFlags(f);
  if (f.auth && !auth.creds && !auth.user && !auth.token) auth.creds = join(f.auth, 'monitor.creds');
  let link: NatsLink;
  try {
    link = await NatsLink.open({
      servers: f.nats ?? 'nats://127.0.0.1:4222',
      via: flagSource(FLAGS, 'nats', flags),
      name: 'cascade',
      auth: { inboxPrefix: '_INBOX_monitor', ...auth },
      log: () => undefined,
      firstConnect: 'now',
    });
  } catch (err) {
    process.stderr.write(`cascade: ${redactSecrets((err as Error).message)}\n`);
    process.exit(1);
  }
  const nc = link.nc!;
  const out = (v: unknown, text: string) => process.stdout.write(f.json ? `${JSON.stringify(v)}\n` : text);
  try {
    const [cmd, sub, target, ...rest] = words;
    if (cmd === 'fleet') {
      const edges = await listFleet(nc);
      out(edges, formatFleet(edges));
    } else if (cmd === 'model') {
      await modelCommand(nc, sub!, target, f, out);
    } else if (cmd === 'rollout') {
      await rolloutCommand(nc, words.slice(1), f, out);
    } else if (cmd === 'device') {
      await deviceCommand(nc, words.slice(1), f, out);
    } else if (sub === 'get') {
      const s = await getSettings(nc, target ?? 'default');
      out(s, `${s.key} (revision ${s.revision}): ${JSON.stringify(s.settings)}\n`);
    } else if (sub === 'set') {
      const s = await setSettings(nc, target!, rest);
      out(s, `${s.key} (revision ${s.revision}): ${JSON.stringify(s.settings)}\n`);
    } else {
      const key = await removeSettings(nc, target!);
      out({ key, removed: true }, `${key} removed\n`);
    }
  } catch (err) {
    process.stderr.write(`cascade: ${redactSecrets((err as Error).message)}\n`);
    await link.close();
    process.exit(exitStatus(err));
  }
  await link.close();
}

/** Throws a FlagError when the words are not a command. */
function check(words: string[]): void {
  const [cmd, sub, target, ...rest] = words;
  if (cmd === undefined) return;
  if (cmd === 'fleet' && words.length === 1) return;
  if (cmd === 'model') {
    if (sub === 'ls' && words.length === 2) return;
    if ((sub === 'push' || sub === 'rm' || sub === 'fetch') && target && rest.length === 0) return;
  }
  if (cmd === 'rollout') {
    if (sub === 'status' && target && rest.length === 0) return;
    if (sub && sub !== 'status' && !target) return;
  }
  if (cmd === 'auth' && (sub === 'init' || sub === 'site') && target && rest.length === 0) return;
  if (cmd === 'device') {
    if (sub === 'ls' && words.length === 2) return;
    if ((sub === 'add' || sub === 'revoke') && target && rest.length === 0) return;
  }
  if (cmd === 'config') {
    if (sub === 'get' && words.length <= 3) return;
    if (sub === 'set' && target && rest.length > 0) return;
    if (sub === 'rm' && target && rest.length === 0) return;
  }
  throw new FlagError(`not a command: cascade ${words.join(' ')}`);
}

if (isMain(import.meta.url)) void main();
