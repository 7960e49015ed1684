import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileEdgeOptions } from './options.js';
import { openSource, Tail, toPlanar, withPassword, type Frame } from './sources.js';

const SAMPLES = new URL('../../../samples/cifar10-test-1000.bin', import.meta.url).pathname;
const records = readFileSync(SAMPLES);
const planar = (i: number) => new Uint8Array(records.subarray(i * 3073 + 1, (i + 1) * 3073));

function interleaved(chw: Uint8Array): Buffer {
  const out = Buffer.alloc(chw.length);
  for (let p = 0; p < 1024; p++) for (let c = 0; c < 3; c++) out[p * 3 + c] = chw[c * 1024 + p]!;
  return out;
}

async function collect(it: AsyncIterable<Frame>): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of it) out.push(f);
  return out;
}

const ffmpeg = (args: string[]) => {
  if (spawnSync('sh', ['-c', 'command -v ffmpeg'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('ffmpeg is not installed: run scripts/setup test (or apt-get install ffmpeg) and try again');
  }
  return execFileSync('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
};

describe('sources - CIFAR binary', () => {
  it('yields planar pixels and labels, in order, up to the limit', async () => {
    const frames = await collect(await openSource(SAMPLES, { size: 32, limit: 5 }));
    expect(frames).toHaveLength(5);
    expect(frames[3]!.pixels).toEqual(planar(3));
    expect(frames[3]!.label).toBe(records[3 * 3073]);
    expect(frames[3]!.id).toBe('cifar10-test-1000.bin#3');
  });

  it('a truncated file is refused with its size', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'src-'));
    writeFileSync(join(dir, 'bad.bin'), records.subarray(0, 5000));
    await expect(collect(await openSource(join(dir, 'bad.bin'), { size: 32 }))).rejects.toThrow(
      /5000 bytes is not a whole number/,
    );
  });
});

describe('sources - ffmpeg', () => {
  it('a folder of PNGs decodes to the exact pixels', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'png-'));
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(dir, `raw${i}`), interleaved(planar(i)));
      ffmpeg([
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        '-s',
        '32x32',
        '-i',
        join(dir, `raw${i}`),
        '-frames:v',
        '1',
        join(dir, `img${i}.png`),
      ]);
    }
    const frames = await collect(await openSource(dir, { size: 32 }));
    expect(frames.map((f) => f.id)).toEqual(['img0.png', 'img1.png', 'img2.png']);
    frames.forEach((f, i) => expect(f.pixels).toEqual(planar(i)));
  });

  it('a video file is sampled at the requested rate and resized to the model input', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vid-'));
    const raw = Buffer.concat(Array.from({ length: 10 }, (_, i) => interleaved(planar(i))));
    writeFileSync(join(dir, 'frames.rgb'), raw);
    ffmpeg([
      '-f',
      'rawvideo',
      '-pix_fmt',
      'rgb24',
      '-s',
      '32x32',
      '-r',
      '10',
      '-i',
      join(dir, 'frames.rgb'),
      '-vf',
      'scale=64:64',
      '-c:v',
      'ffv1',
      join(dir, 'clip.mkv'),
    ]);
    const frames = await collect(await openSource(join(dir, 'clip.mkv'), { size: 32, fps: 5 }));
    expect(frames).toHaveLength(5);
    for (const f of frames) expect(f.pixels).toHaveLength(3 * 32 * 32);
  });

  it('a missing file names the source', async () => {
    await expect(openSource('/nonexistent/clip.mp4', { size: 32 })).rejects.toThrow(
      /\/nonexistent\/clip.mp4: no such file/,
    );
  });

  it('toPlanar moves interleaved RGB to channel planes', () => {
    const hwc = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(Array.from(toPlanar(hwc, 2))).toEqual([1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12]);
  });
});

describe('edge options', () => {
  it('an unknown mode, encoding or backend is named', () => {
    expect(() => compileEdgeOptions({ model: 'm', mode: 'jpeg' as never })).toThrow(/mode must be one of state, image/);
    expect(() => compileEdgeOptions({ model: 'm', encoding: 'bf16' as never })).toThrow(/encoding must be one of/);
    expect(() => compileEdgeOptions({ model: 'm', backend: 'gpu' as never })).toThrow(
      /backend must be one of node, web/,
    );
    expect(() => compileEdgeOptions({ model: 'm', maxInflight: 0 })).toThrow(/maxInflight must be an integer >= 1/);
  });
});

describe('sources - what a failing camera leaves in memory and in logs', () => {
  it("keeps only the tail of ffmpeg's stderr, however much it writes", () => {
    const tail = new Tail(100);
    for (let i = 0; i < 100_000; i++) tail.push(`warning ${i}: corrupt macroblock\n`);
    expect(tail.text().length).toBe(100);
    expect(tail.text().endsWith('warning 99999: corrupt macroblock\n')).toBe(true);
    expect((tail as unknown as { buf: string }).buf.length).toBeLessThanOrEqual(200);
  });

  it("an RTSP camera that cannot be reached is said to be down, with the URL's password hidden, and retried", async () => {
    ffmpeg(['-version']);
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as AddressInfo).port;
        srv.close(() => resolve(p)); // nothing listens there now: the connection is refused
      });
    });
    const down = await firstDown(`rtsp://admin:hunter2@127.0.0.1:${port}/Streaming/101`);
    expect(down.source).toBe(`rtsp://admin:***@127.0.0.1:${port}/Streaming/101`);
    expect(down.error).toMatch(/Connection refused/);
    expect(JSON.stringify(down)).not.toContain('hunter2');
  });
});

/** The first camera_down a live source logs; then the source is stopped. */
async function firstDown(url: string, o: { password?: string } = {}): Promise<Record<string, unknown>> {
  const stop = new AbortController();
  const events: Record<string, unknown>[] = [];
  const source = await openSource(url, { size: 32, limit: 1, signal: stop.signal, log: (event, f) => void events.push({ event, ...f }), ...o }); // prettier-ignore
  const done = collect(source);
  for (let i = 0; i < 200 && !events.some((e) => e.event === 'camera_down'); i++) await new Promise((r) => setTimeout(r, 50)); // prettier-ignore
  stop.abort();
  expect(await done).toEqual([]);
  return events.find((e) => e.event === 'camera_down')!;
}

describe('camera passwords from a secret', () => {
  it('go into an rtsp:// URL that names the user, never into what the source says of itself', async () => {
    expect(withPassword('rtsp://viewer@cam-1.local:554/live', 's3cr/t@x')).toBe('rtsp://viewer:s3cr%2Ft%40x@cam-1.local:554/live'); // prettier-ignore
    expect(withPassword('rtsp://viewer@cam-1.local/live', undefined)).toBe('rtsp://viewer@cam-1.local/live');
    expect(() => withPassword('rtsp://cam-1.local/live', 'p')).toThrow(/name the camera's user in the URL/);
    expect(() => withPassword('rtsp://viewer:old@cam-1.local/live', 'p')).toThrow(/has a password already/);
    await expect(openSource(SAMPLES, { size: 32, password: 'p' })).rejects.toThrow(
      /a password applies to rtsp:\/\/ sources only/,
    );
  });

  it('an unreachable camera is said to be down naming its URL without the password', async () => {
    const down = await firstDown('rtsp://viewer@127.0.0.1:1/live', { password: 'hunter2' });
    expect(down.source).toBe('rtsp://viewer@127.0.0.1:1/live');
    expect(JSON.stringify(down)).not.toContain('hunter2');
  });
});
