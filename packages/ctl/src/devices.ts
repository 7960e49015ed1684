// Fleet identity with NATS's decentralised authentication: an operator and two accounts (the system account and
// CASCADE), a user JWT per device whose permissions follow from its identity, and revocation pushed to the running
// servers. nats-server's files never change after `cascade auth init`: devices are added and revoked by command.
import { ConfigError } from '@cascade/proto';
import {
  createAccount,
  createOperator,
  createUser,
  decode,
  encodeAccount,
  encodeOperator,
  encodeUser,
  fmtCreds,
  fromSeed,
  type Account,
  type KeyPair,
  type Permissions,
  type User,
} from '@nats-io/jwt';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** A device: an edge agent at a site, `<site>.<agent>`; its cameras are `<site>.<agent>.<camera>`. */
export const DEVICE_ID = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** The bucket of issued devices: public keys and dates, never a secret. */
export const DEVICES_BUCKET = 'cascade-devices';

export interface DeviceEntry {
  id: string;
  public_key: string;
  issued_unix_ms: number;
  revoked_unix_ms?: number;
}

/** Reading the model registry (an object store): its info, an object's description, its chunks. */
const READ_MODELS = [
  '$JS.API.STREAM.INFO.OBJ_cascade-models',
  '$JS.API.DIRECT.GET.OBJ_cascade-models.>',
  '$JS.API.STREAM.MSG.GET.OBJ_cascade-models',
  '$JS.API.CONSUMER.CREATE.OBJ_cascade-models.>',
  '$JS.API.CONSUMER.DELETE.OBJ_cascade-models.>',
  '$JS.FC.OBJ_cascade-models.>',
];

/** Watching the models' rollouts (`models.<name>` in the settings bucket). */
const WATCH_ROLLOUTS = [
  '$JS.API.CONSUMER.CREATE.KV_cascade-config.*.$KV.cascade-config.models.>',
  '$JS.API.CONSUMER.DELETE.KV_cascade-config.*',
  '$JS.FC.KV_cascade-config.>',
];

/** What a device may do, from its identity: its cameras' results and inboxes, nothing of another agent or site. */
export function devicePermissions(id: string): Permissions {
  if (!DEVICE_ID.test(id)) throw new ConfigError(`device id "${id}" must be <site>.<agent>, e.g. site-a.agent-1`);
  const cams = `${id}.*`;
  return {
    pub: {
      allow: [
        'cascade.v1.infer.>',
        `cascade.v1.results.${cams}`,
        '$JS.API.STREAM.INFO.CASCADE_RESULTS',
        `$JS.API.DIRECT.GET.CASCADE_RESULTS.cascade.v1.results.${cams}`,
        '$JS.API.STREAM.INFO.KV_cascade-config',
        '$JS.API.STREAM.INFO.KV_cascade-edges',
        `$JS.API.CONSUMER.CREATE.KV_cascade-config.*.$KV.cascade-config.edges.${cams}`,
        '$JS.API.CONSUMER.CREATE.KV_cascade-config.*.$KV.cascade-config.edges.default',
        ...WATCH_ROLLOUTS,
        `$KV.cascade-edges.${cams}`,
        ...READ_MODELS,
      ],
    },
    sub: { allow: [`_INBOX.${id}.>`] },
  };
}

/** A site: the name of a camera site whose leaf nats-server joins the cloud. */
export const SITE_ID = /^[A-Za-z0-9_-]+$/;

/**
 * What a site's leaf link may carry, from the cloud's side (the same as the site users of deploy/nats/nats.conf):
 * it may publish inference requests and its own devices' results (all that leaves the site) and subscribe to its
 * devices' inboxes (all that reaches the site). The devices' own credentials narrow this again at the site.
 */
export function sitePermissions(site: string): Permissions {
  if (!SITE_ID.test(site)) throw new ConfigError(`site "${site}" must be a name of letters, digits, - and _, e.g. site-a`); // prettier-ignore
  return {
    pub: {
      allow: [
        'cascade.v1.infer.>',
        `cascade.v1.results.${site}.>`,
        '$JS.API.STREAM.INFO.CASCADE_RESULTS',
        `$JS.API.DIRECT.GET.CASCADE_RESULTS.cascade.v1.results.${site}.>`,
      ],
    },
    sub: { allow: [`_INBOX.${site}.>`] },
  };
}

/** The roles `cascade auth init` issues besides devices (the same as deploy/nats/nats.conf's for passwords). */
export const ROLE_PERMISSIONS: Record<'worker' | 'monitor', Permissions> = {
  worker: {
    pub: {
      allow: [
        '$SRV.>',
        '$JS.API.INFO',
        '$JS.API.STREAM.INFO.CASCADE_RESULTS',
        '$JS.API.STREAM.CREATE.CASCADE_RESULTS',
        '$JS.API.STREAM.UPDATE.CASCADE_RESULTS',
        '$JS.API.STREAM.INFO.KV_cascade-config',
        '$JS.API.STREAM.CREATE.KV_cascade-config',
        '$JS.API.STREAM.INFO.KV_cascade-edges',
        '$JS.API.STREAM.CREATE.KV_cascade-edges',
        ...WATCH_ROLLOUTS,
        ...READ_MODELS,
      ],
    },
    sub: { allow: ['cascade.v1.infer.>', '$SRV.>', '_INBOX_worker.>'] },
    resp: { max: 8 },
  },
  monitor: {
    pub: {
      allow: [
        '$SRV.>',
        '$JS.API.>',
        '$JS.ACK.CASCADE_RESULTS.>',
        '$JS.FC.>',
        '$KV.cascade-config.>',
        `$KV.${DEVICES_BUCKET}.>`,
        '$O.cascade-models.>',
      ],
    },
    sub: { allow: ['cascade.v1.results.>', '_INBOX_monitor.>'] },
  },
};

const ENC = new TextEncoder();

/** The keys and JWTs `cascade auth init` made, read from its directory. */
export class AuthDir {
  private constructor(
    readonly dir: string,
    readonly operator: KeyPair,
    readonly system: KeyPair,
    readonly account: KeyPair,
    readonly signer: KeyPair,
  ) {}

  static open(dir: string): AuthDir {
    const seed = (name: string) => {
      const file = join(dir, `${name}.nk`);
      if (!existsSync(file)) throw new ConfigError(`${file} is missing: run cascade auth init ${dir} first`);
      return fromSeed(readFileSync(file));
    };
    return new AuthDir(dir, seed('operator'), seed('system'), seed('account'), seed('account-signing'));
  }

  /**
   * Makes the operator, the system account and the CASCADE account (JetStream on, one signing key for users), the
   * nats-server configuration that trusts them (`server.conf`: include it; its resolver keeps accounts in
   * `resolverDir`, by default DIR/jwt) and the credentials of the system user, the workers and the operators
   * (`sys.creds`, `worker.creds`, `monitor.creds`). Seeds are written 0600.
   */
  static async init(dir: string, resolverDir?: string): Promise<AuthDir> {
    if (existsSync(join(dir, 'operator.nk'))) throw new ConfigError(`${dir} holds keys already; refusing to replace them`); // prettier-ignore
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const a = new AuthDir(dir, createOperator(), createAccount(), createAccount(), createAccount());
    for (const [name, kp] of [
      ['operator', a.operator],
      ['system', a.system],
      ['account', a.account],
      ['account-signing', a.signer],
    ] as const)
      // prettier-ignore
      a.secret(`${name}.nk`, kp.getSeed());
    const sys = a.system.getPublicKey();
    const operatorJwt = await encodeOperator('cascade', a.operator, { system_account: sys });
    const open = { subs: -1, data: -1, payload: -1, conn: -1, leaf: -1, imports: -1, exports: -1, wildcards: true };
    const sysJwt = await encodeAccount('SYS', a.system, { limits: open }, { signer: a.operator });
    const accountJwt = await a.accountJwt({});
    a.public('operator.jwt', operatorJwt);
    a.public('system.jwt', sysJwt);
    a.public('account.jwt', accountJwt);
    const jwtDir = resolverDir ?? resolve(dir, 'jwt');
    a.public(
      'server.conf',
      [
        '# Cascade in operator mode (decentralised authentication), from cascade auth init. Include it in the server',
        '# configuration. Devices are added and revoked with `cascade device`; this file does not change.',
        `operator: "${operatorJwt}"`,
        `system_account: "${sys}"`,
        `resolver: { type: full, dir: "${jwtDir}", allow_delete: false, interval: "2m", timeout: "2s" }`,
        `resolver_preload: { "${sys}": "${sysJwt}", "${a.account.getPublicKey()}": "${accountJwt}" }`,
        '',
      ].join('\n'),
    );
    const sysUser = createUser();
    a.secret('sys.creds', fmtCreds(await encodeUser('sys', sysUser, a.system), sysUser));
    for (const role of ['worker', 'monitor'] as const) a.secret(`${role}.creds`, await a.userCreds(role, ROLE_PERMISSIONS[role]).then((c) => c.creds)); // prettier-ignore
    return a;
  }

  /** Credentials of a new user of the CASCADE account with these permissions, signed by the account's signing key. */
  async userCreds(
    name: string,
    permissions: Permissions,
    more: Partial<User> = {},
  ): Promise<{ creds: Uint8Array; publicKey: string }> {
    const user = createUser();
    const jwt = await encodeUser(name, user, this.signer, {
      issuer_account: this.account.getPublicKey(),
      ...permissions,
      ...more,
    });
    return { creds: fmtCreds(jwt, user), publicKey: user.getPublicKey() };
  }

  /**
   * A camera site in operator mode: `sites/<site>/` holds the site's nats-server configuration (`site.conf`) and
   * the two logins of its leaf links, valid only as leaf links: `leaf.creds` (CASCADE account, the site's
   * permissions) and `leaf-sys.creds` (system account: the site's server looks accounts up in the cloud and hears
   * their updates, so a device revoked in the cloud is refused at its site too). Devices connect to the site's
   * server with their own credentials, as they would to the cloud. `path` is where the folder will be on the site's
   * machine (default: where it is written).
   */
  async site(site: string, path?: string): Promise<string> {
    const permissions = sitePermissions(site);
    const out = join(this.dir, 'sites', site);
    if (existsSync(join(out, 'leaf.creds'))) throw new ConfigError(`${out} exists: site ${site} was made already`);
    mkdirSync(out, { recursive: true, mode: 0o700 });
    const leafOnly: Partial<User> = { allowed_connection_types: ['LEAFNODE'] };
    const leaf = await this.userCreds(`site ${site}`, permissions, leafOnly);
    this.secret(join('sites', site, 'leaf.creds'), leaf.creds);
    const sysUser = createUser();
    const sysJwt = await encodeUser(`site ${site} resolver`, sysUser, this.system, leafOnly);
    this.secret(join('sites', site, 'leaf-sys.creds'), fmtCreds(sysJwt, sysUser));
    const at = resolve(path ?? out);
    const trust = this.trust();
    const hubs = '[$CASCADE_SITE_HUB_1, $CASCADE_SITE_HUB_2, $CASCADE_SITE_HUB_3]';
    const tls = [
      '      tls { cert_file: $CASCADE_SITE_TLS_CERT, key_file: $CASCADE_SITE_TLS_KEY, ca_file: $CASCADE_SITE_TLS_CA, timeout: 2 }', // prettier-ignore
    ];
    this.public(
      join('sites', site, 'site.conf'),
      [
        `# The nats-server of camera site ${site} in operator mode, from cascade auth site. Devices at the site log in`,
        '# with their own credentials (cascade device add), as in the cloud; a device revoked in the cloud is refused',
        '# here too, within seconds. The site joins the cloud as a leaf node over TLS, with two links: one for the',
        "# site's traffic (leaf.creds) and one through which it looks accounts up and hears their updates",
        '# (leaf-sys.creds). While the link is down the site keeps serving the devices it knows.',
        "#   CASCADE_SITE_HUB_1 .. _3       the cloud nodes' leaf URLs, nats-leaf://<node>:7422 (no password)",
        "#   CASCADE_SITE_TLS_CERT, _KEY    the site's certificate and key (PEM), signed by the cloud's CA",
        "#   CASCADE_SITE_TLS_CA            the cloud's CA (it signed the cloud nodes' certificates)",
        `server_name: ${site}`,
        'port: 4222',
        'http_port: 8222',
        `operator: "${trust.operator}"`,
        `system_account: "${trust.sys}"`,
        `resolver: { type: cache, dir: "${join(at, 'jwt')}", ttl: "1h", timeout: "2s" }`,
        `resolver_preload: ${trust.preload}`,
        'leafnodes {',
        '  reconnect: 1',
        '  remotes: [',
        `    { urls: ${hubs}, account: "${this.account.getPublicKey()}", credentials: "${join(at, 'leaf.creds')}",`,
        ...tls,
        '    }',
        `    { urls: ${hubs}, account: "${trust.sys}", credentials: "${join(at, 'leaf-sys.creds')}",`,
        ...tls,
        '    }',
        '  ]',
        '}',
        '',
      ].join('\n'),
    );
    return out;
  }

  /** The operator's JWT, the system account and the preload of both accounts' JWTs, as servers are given them. */
  private trust(): { operator: string; sys: string; preload: string } {
    const read = (name: string) => readFileSync(join(this.dir, name), 'utf8').trim();
    const sys = this.system.getPublicKey();
    return {
      operator: read('operator.jwt'),
      sys,
      preload: `{ "${sys}": "${read('system.jwt')}", "${this.account.getPublicKey()}": "${read('account.jwt')}" }`,
    };
  }

  /** The CASCADE account's JWT, signed by the operator, with these revocations (user key: revoked at, seconds). */
  async accountJwt(revocations: Record<string, number>): Promise<string> {
    const account: Partial<Account> = {
      limits: { subs: -1, data: -1, payload: -1, conn: -1, leaf: -1, imports: -1, exports: -1, wildcards: true, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 }, // prettier-ignore
      signing_keys: [this.signer.getPublicKey()],
      revocations,
    };
    return encodeAccount('CASCADE', this.account, account, { signer: this.operator });
  }

  /** The revocations in force (from the account JWT last written here). */
  revocations(): Record<string, number> {
    const file = join(this.dir, 'account.jwt');
    return { ...(decode<Account>(readFileSync(file, 'utf8').trim()).nats.revocations ?? {}) };
  }

  /** Writes the account JWT and returns it (for the servers' resolver). */
  writeAccount(jwt: string): void {
    this.public('account.jwt', jwt);
  }

  private secret(name: string, data: Uint8Array | string): void {
    const file = join(this.dir, name);
    writeFileSync(file, typeof data === 'string' ? ENC.encode(data) : data, { mode: 0o600 });
    chmodSync(file, 0o600);
  }

  private public(name: string, text: string): void {
    writeFileSync(join(this.dir, name), text);
  }
}

/** The bucket of issued devices, made when it is missing. */
function devicesBucket(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(DEVICES_BUCKET, { history: 5 });
}

/** Issues a device's credentials and records it (public key and date) in the devices bucket. */
export async function addDevice(
  nc: NatsConnection,
  auth: AuthDir,
  id: string,
): Promise<{ entry: DeviceEntry; creds: Uint8Array }> {
  const permissions = devicePermissions(id);
  const kv = await devicesBucket(nc);
  const old = await kv.get(id);
  if (old?.operation === 'PUT' && old.json<DeviceEntry>().revoked_unix_ms === undefined)
    throw new ConfigError(`device ${id} exists: revoke it first (cascade device revoke ${id})`);
  const { creds, publicKey } = await auth.userCreds(id, permissions);
  const entry: DeviceEntry = { id, public_key: publicKey, issued_unix_ms: Date.now() };
  await kv.put(id, JSON.stringify(entry));
  return { entry, creds };
}

export async function listDevices(nc: NatsConnection): Promise<DeviceEntry[]> {
  const kv = await devicesBucket(nc);
  const out: DeviceEntry[] = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (e?.operation === 'PUT') out.push(e.json<DeviceEntry>());
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Revokes a device: its public key goes into the CASCADE account's revocations, and the account JWT, signed again
 * by the operator, is pushed to the servers' resolver through the system account (`sys`); a server then closes the
 * device's connections and refuses it. Returns when the servers have taken the update.
 */
export async function revokeDevice(
  nc: NatsConnection,
  sys: NatsConnection,
  auth: AuthDir,
  id: string,
): Promise<DeviceEntry> {
  const kv = await devicesBucket(nc);
  const e = await kv.get(id);
  if (!e || e.operation !== 'PUT') throw new ConfigError(`no device ${id} (cascade device ls lists them)`);
  const entry = e.json<DeviceEntry>();
  const revocations = { ...auth.revocations(), [entry.public_key]: Math.floor(Date.now() / 1000) };
  const jwt = await auth.accountJwt(revocations);
  // The account's own update subject, which every resolver listens on: the cloud's, and the sites' (cache
  // resolvers) through their system-account leaf links.
  const subject = `$SYS.REQ.ACCOUNT.${auth.account.getPublicKey()}.CLAIMS.UPDATE`;
  const reply = await sys.request(subject, ENC.encode(jwt), { timeout: 5000 });
  const answer = reply.json<{ error?: { description?: string }; data?: { code?: number } }>();
  if (answer.error) throw new ConfigError(`the servers refused the account update: ${answer.error.description}`);
  auth.writeAccount(jwt);
  const revoked = { ...entry, revoked_unix_ms: Date.now() };
  await kv.put(id, JSON.stringify(revoked));
  return revoked;
}
