import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PAGE, parseWebArgs, serveWeb } from './web.js';

// The page is built by scripts/build (Vite); these tests need its index.html, not the browser.
describe('cascade-edge web - the page server', () => {
  let url: string;
  let close: () => void;
  beforeAll(async () => {
    const s = await serveWeb({ port: 0, host: '127.0.0.1', defaults: 'nats=wss%3A%2F%2Fnats.example&id=web-3' });
    url = s.url;
    close = () => s.server.close();
  });
  afterAll(() => close());

  it('serves the page, its assets and the model directories; a bare / goes to the page with the defaults', async () => {
    const bare = await fetch(url, { redirect: 'manual' });
    expect(bare.status).toBe(302);
    expect(bare.headers.get('location')).toBe('/?nats=wss%3A%2F%2Fnats.example&id=web-3');
    const page = await fetch(`${url}?id=x`);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const script = /src="([^"]+\.js)"/.exec(await page.text())![1]!;
    expect((await fetch(new URL(script, url))).headers.get('content-type')).toBe('text/javascript');
    const manifest = await fetch(`${url}models/ranet-cifar10/manifest.json`);
    expect(manifest.status).toBe(200);
    expect(((await manifest.json()) as { name: string }).name).toBe('ranet-cifar10');
    const stage = await fetch(`${url}models/ranet-cifar10/stage-0.onnx`, { method: 'HEAD' });
    expect(Number(stage.headers.get('content-length'))).toBeGreaterThan(1000);
  });

  it('nothing outside its two folders, only GET and HEAD', async () => {
    for (const path of ['models/%2e%2e/package.json', 'models/..%2f..%2fpackage.json', '%2e%2e/%2e%2e/package.json'])
      expect((await fetch(`${url}${path}`)).status, path).toBe(404);
    expect((await fetch(`${url}models/ranet-cifar10/nope.onnx`)).status).toBe(404);
    expect((await fetch(`${url}?id=x`, { method: 'POST' })).status).toBe(405);
  });

  it('refuses what it cannot serve, naming it', async () => {
    await expect(serveWeb({ port: 0, page: tmpdir() })).rejects.toThrow(/index.html is missing: build the page first/);
    await expect(serveWeb({ port: 0, models: '/nonexistent' })).rejects.toThrow(/\/nonexistent: no such folder/);
    await expect(serveWeb({ port: 0, tlsCert: 'a.pem' })).rejects.toThrow(/--tls-cert and --tls-key go together/);
    expect(() => parseWebArgs(['--port', 'http'], {})).toThrow(/--port must be a port number, got http/);
    expect(parseWebArgs(['--nats', 'wss://n:443', '--id', 'web-2'], {})).toMatchObject({ defaults: 'nats=wss%3A%2F%2Fn%3A443&id=web-2' }); // prettier-ignore
    expect(DEFAULT_PAGE).toMatch(/packages\/web\/dist$/);
  });

  it('over TLS with the certificate given (a camera needs https)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cascade-web-tls-'));
    const [cert, key] = [join(dir, 'c.pem'), join(dir, 'k.pem')];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' }); // prettier-ignore
    const s = await serveWeb({ port: 0, host: '127.0.0.1', tlsCert: cert, tlsKey: key });
    try {
      expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      const status = await new Promise<number>((resolve, reject) =>
        request(`${s.url}models/ranet-cifar10/manifest.json`, { ca: readFileSync(cert) }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
          .on('error', reject)
          .end(),
      );
      expect(status).toBe(200);
    } finally {
      s.server.close();
    }
  });
});
