// `cascade device ...`: argument handling and printing around devices.ts.
import { ConfigError } from '@cascade/proto';
import { connect, credsAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { addDevice, AuthDir, listDevices, revokeDevice } from './devices.js';

export async function deviceCommand(
  nc: NatsConnection,
  words: string[],
  f: { auth?: string; out?: string; json?: boolean },
  out: (json: unknown, text: string) => void,
): Promise<void> {
  const [sub, id] = words;
  if (sub === 'ls') {
    const devices = await listDevices(nc);
    const when = (ms?: number) => (ms ? new Date(ms).toISOString() : '');
    const lines = devices.map((d) => `${d.id.padEnd(28)} ${d.public_key} issued ${when(d.issued_unix_ms)}${d.revoked_unix_ms ? `, revoked ${when(d.revoked_unix_ms)}` : ''}`); // prettier-ignore
    out(devices, `${lines.join('\n')}${lines.length ? '\n' : 'no devices issued\n'}`);
    return;
  }
  if (!f.auth) throw new ConfigError(`cascade device ${sub} needs --auth DIR (the keys of cascade auth init)`);
  const auth = AuthDir.open(f.auth);
  if (sub === 'add') {
    const { entry, creds } = await addDevice(nc, auth, id!);
    const file = f.out ?? join(f.auth, 'devices', `${id}.creds`);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, creds, { mode: 0o600 });
    out({ ...entry, creds_file: file }, `${id}: credentials in ${file} (give them to the agent: --nats-creds)\n`);
    return;
  }
  // revoke: the account update goes to the servers through the system account.
  const servers = nc.info ? [`${nc.getServer()}`] : [];
  const sys = await connect({
    servers,
    authenticator: credsAuthenticator(readFileSync(join(f.auth, 'sys.creds'))),
    name: 'cascade device revoke',
  });
  try {
    const entry = await revokeDevice(nc, sys, auth, id!);
    out(entry, `${id}: revoked; the servers refuse ${entry.public_key} from now on\n`);
  } finally {
    await sys.close();
  }
}
