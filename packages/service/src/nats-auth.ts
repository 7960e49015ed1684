import { readFileSync } from 'node:fs';
import { credsAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import type { Flag } from './flags.js';

/** How a part authenticates to NATS and secures the connection. Secrets never reach logs. */
export interface NatsAuth {
  user?: string;
  /** The password itself, or read from `passwordFile`. */
  password?: string;
  passwordFile?: string;
  token?: string;
  /**
   * A credentials file (a user JWT and its NKey seed, as `cascade device add` writes it) for servers in operator
   * mode (decentralised authentication).
   */
  creds?: string;
  /** PEM files: the CA to trust, and a client certificate and key for mutual TLS. */
  ca?: string;
  cert?: string;
  key?: string;
  /** Require TLS even without a CA file (system trust store). */
  tls?: boolean;
  /** Inbox prefix for replies; an edge's permissions allow only its own (`_INBOX.<edge-id>`). */
  inboxPrefix?: string;
}

/** The NATS flags every CLI shares; each has an environment variable. */
export const NATS_AUTH_FLAGS = {
  'nats-user': { type: 'string', env: 'NATS_USER', help: 'NATS user' },
  'nats-password': { type: 'string', env: 'NATS_PASSWORD', help: 'NATS password (prefer --nats-password-file)' },
  'nats-password-file': { type: 'string', env: 'NATS_PASSWORD_FILE', help: 'file holding the NATS password' },
  'nats-token': { type: 'string', env: 'NATS_TOKEN', help: 'NATS token' },
  'nats-creds': {
    type: 'string',
    env: 'NATS_CREDS',
    help: 'credentials file (user JWT and NKey seed) for decentralised authentication, as cascade device add writes it',
  },
  'nats-ca': { type: 'string', env: 'NATS_CA', help: 'CA certificate (PEM) to verify the server; turns TLS on' },
  'nats-cert': { type: 'string', env: 'NATS_CERT', help: 'client certificate (PEM) for mutual TLS' },
  'nats-key': { type: 'string', env: 'NATS_KEY', help: 'client key (PEM) for mutual TLS' },
  'nats-tls': { type: 'boolean', help: 'require TLS (with the system trust store when no --nats-ca)' },
  'nats-inbox-prefix': {
    type: 'string',
    env: 'NATS_INBOX_PREFIX',
    help: 'reply inbox prefix, as the server permissions allow (each command has its default)',
  },
} as const satisfies Record<string, Flag>;

type AuthValues = { [K in keyof typeof NATS_AUTH_FLAGS]?: string | boolean };

/** NatsAuth from parsed NATS_AUTH_FLAGS values. */
export function natsAuthFromFlags(v: AuthValues): NatsAuth {
  const s = (k: keyof typeof NATS_AUTH_FLAGS) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const auth: NatsAuth = {};
  const set = <K extends keyof NatsAuth>(k: K, x: NatsAuth[K] | undefined) => {
    if (x !== undefined) auth[k] = x;
  };
  set('user', s('nats-user'));
  set('password', s('nats-password'));
  set('passwordFile', s('nats-password-file'));
  set('token', s('nats-token'));
  set('creds', s('nats-creds'));
  set('ca', s('nats-ca'));
  set('cert', s('nats-cert'));
  set('key', s('nats-key'));
  if (v['nats-tls']) auth.tls = true;
  set('inboxPrefix', s('nats-inbox-prefix'));
  return auth;
}

/** Options for nats.js `connect()`: user, pass, token, credentials, tls and inboxPrefix. */
export function natsConnectOptions(auth: NatsAuth = {}): Partial<ConnectionOptions> {
  const o: Partial<ConnectionOptions> = {};
  if (auth.user) o.user = auth.user;
  const pass = auth.password ?? (auth.passwordFile ? readFileSync(auth.passwordFile, 'utf8').trim() : undefined);
  if (pass !== undefined) o.pass = pass;
  if (auth.token) o.token = auth.token;
  if (auth.creds) o.authenticator = credsAuthenticator(readFileSync(auth.creds));
  if (auth.ca || auth.cert || auth.key || auth.tls) {
    o.tls = {
      ...(auth.ca ? { caFile: auth.ca } : {}),
      ...(auth.cert ? { certFile: auth.cert } : {}),
      ...(auth.key ? { keyFile: auth.key } : {}),
    };
  }
  if (auth.inboxPrefix) o.inboxPrefix = auth.inboxPrefix;
  return o;
}

/**
 * The name in a credentials file's user JWT (`cascade device add` names a device's user by its id, `<site>.<agent>`);
 * undefined when the file holds no JWT with a name. Read, not verified: the server verifies it.
 */
export function credsName(file: string): string | undefined {
  const m = /-----BEGIN NATS USER JWT-----\s*([\w-]+)\.([\w-]+)\.([\w-]+)/.exec(readFileSync(file, 'utf8'));
  if (!m) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(m[2]!, 'base64url').toString('utf8')) as { name?: unknown };
    return typeof claims.name === 'string' ? claims.name : undefined;
  } catch {
    return undefined;
  }
}
