// cascade-edge web: serves the browser edge (packages/web, built) and model directories, so that any phone or laptop
// that opens the page becomes an edge. Static files only: the page talks to NATS itself, over its WebSocket listener.
import { ConfigError } from '@cascade/proto';
import { parseFlags, usage, type Flag } from '@cascade/service';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.onnx': 'application/octet-stream',
  '.css': 'text/css',
  '.png': 'image/png',
};

/** The built page in this workspace (packages/web/dist), found from this file. */
export const DEFAULT_PAGE = fileURLToPath(new URL('../../web/dist', import.meta.url));
export const DEFAULT_MODELS = fileURLToPath(new URL('../../../models', import.meta.url));

export interface WebOptions {
  /** The built page (index.html and its assets). @default DEFAULT_PAGE */
  page?: string;
  /** A folder of model directories, served under /models/. @default the repository's models/ */
  models?: string;
  /** @default 8080 */
  port?: number;
  /** @default '0.0.0.0' */
  host?: string;
  /** TLS certificate and key (PEM): a camera needs a secure page (https) anywhere but on localhost. */
  tlsCert?: string;
  tlsKey?: string;
  /**
   * Query string added to a bare `/` by a redirect (e.g. `nats=wss://nats.example.com&id=cam-door`), so a phone only
   * needs the address.
   */
  defaults?: string;
}

/** A file under `root` for a request path, or undefined when it is outside it or missing. */
function fileUnder(root: string, rel: string): string | undefined {
  const file = resolve(root, `.${sep}${rel}`);
  if (file !== root && !file.startsWith(root + sep)) return undefined;
  if (!existsSync(file)) return undefined;
  const st = statSync(file);
  if (st.isDirectory()) return existsSync(join(file, 'index.html')) ? join(file, 'index.html') : undefined;
  return st.isFile() ? file : undefined;
}

/** Starts the server; resolves with it and the URL it answers on. */
export async function serveWeb(o: WebOptions = {}): Promise<{ server: Server; url: string }> {
  const page = resolve(o.page ?? DEFAULT_PAGE);
  const models = resolve(o.models ?? DEFAULT_MODELS);
  if (!existsSync(join(page, 'index.html')))
    throw new ConfigError(`${page}/index.html is missing: build the page first (pnpm --filter @cascade/web run build)`);
  if (!existsSync(models)) throw new ConfigError(`${models}: no such folder of model directories`);
  if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) throw new ConfigError('--tls-cert and --tls-key go together');
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      res.writeHead(400).end('bad path\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const query = (req.url ?? '').includes('?');
    if (path === '/' && o.defaults && !query) {
      res.writeHead(302, { location: `/?${o.defaults}` }).end();
      return;
    }
    const file = path.startsWith('/models/') ? fileUnder(models, path.slice(8)) : fileUnder(page, path.slice(1));
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      // The page's assets are content-hashed; the models are checked against their manifest by the page itself.
      'cache-control': path.startsWith('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  };
  const server =
    o.tlsCert && o.tlsKey
      ? createHttps({ cert: readFileSync(o.tlsCert), key: readFileSync(o.tlsKey) }, handler)
      : createHttp(handler);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, o.host ?? '0.0.0.0', () => ok());
  });
  const { port } = server.address() as AddressInfo;
  const shown = !o.host || o.host === '0.0.0.0' ? '127.0.0.1' : o.host;
  return { server, url: `${o.tlsCert ? 'https' : 'http'}://${shown}:${port}/` };
}

export const WEB_FLAGS = {
  port: { type: 'string', env: 'CASCADE_WEB_PORT', help: 'port (default 8080; 0: any free port)' },
  host: { type: 'string', env: 'CASCADE_WEB_HOST', help: 'address to listen on (default 0.0.0.0)' },
  page: { type: 'string', env: 'CASCADE_WEB_PAGE', help: 'the built page (default packages/web/dist)' },
  models: { type: 'string', env: 'CASCADE_WEB_MODELS', help: 'folder of model directories, served at /models/' },
  'tls-cert': {
    type: 'string',
    env: 'CASCADE_WEB_TLS_CERT',
    help: 'TLS certificate (PEM): https, which a camera needs',
  },
  'tls-key': { type: 'string', env: 'CASCADE_WEB_TLS_KEY', help: 'its key (PEM)' },
  nats: {
    type: 'string',
    env: 'CASCADE_WEB_NATS',
    help: 'NATS WebSocket URL the page connects to by default (wss://...; ws:// on localhost)',
  },
  id: { type: 'string', env: 'CASCADE_WEB_ID', help: 'default edge id of the page' },
  help: { type: 'boolean', help: 'show this help' },
} as const satisfies Record<string, Flag>;

export const WEB_USAGE = usage('cascade-edge web [--port 8080] [--nats wss://HOST:PORT] [--tls-cert F --tls-key F]', WEB_FLAGS); // prettier-ignore

/** Options of `cascade-edge web` from its flags, or 'help'. */
export function parseWebArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): WebOptions | 'help' {
  const f = parseFlags(WEB_FLAGS, argv, env);
  if (f.help) return 'help';
  const port = f.port === undefined ? undefined : Number(f.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new ConfigError(`--port must be a port number, got ${f.port}`);
  const defaults = new URLSearchParams();
  if (f.nats) defaults.set('nats', f.nats);
  if (f.id) defaults.set('id', f.id);
  return {
    ...(port !== undefined ? { port } : {}),
    ...(f.host ? { host: f.host } : {}),
    ...(f.page ? { page: f.page } : {}),
    ...(f.models ? { models: f.models } : {}),
    ...(f['tls-cert'] ? { tlsCert: f['tls-cert'] } : {}),
    ...(f['tls-key'] ? { tlsKey: f['tls-key'] } : {}),
    ...(defaults.size ? { defaults: defaults.toString() } : {}),
  };
}
