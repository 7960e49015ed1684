import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.js';
import { Camera, type CameraFrame } from './camera.js';
import { ffmpegArgs } from './filters.js';
import { CameraMetrics } from './metrics.js';
import { FrameQueue } from './queue.js';
import { formatCamera, parseCamera, parseCameraFlag, parseRegion } from './spec.js';

describe('camera specs', () => {
  it('reads ID=URL with fit, fps, regions (pixels or fractions), substream and hwaccel, and writes it back', () => {
    const c = parseCameraFlag('cam-1=rtsp://viewer@10.0.0.5/live fit=letterbox fps=2 roi=bay-1:0,0.5,0.5,0.5 roi=10,20,300,200 substream=rtsp://viewer@10.0.0.5/sub hwaccel=vaapi'); // prettier-ignore
    expect(c).toEqual({
      id: 'cam-1',
      url: 'rtsp://viewer@10.0.0.5/live',
      fit: 'letterbox',
      fps: 2,
      regions: [
        { name: 'bay-1', x: 0, y: 0.5, w: 0.5, h: 0.5, unit: 'fraction' },
        { name: 'r2', x: 10, y: 20, w: 300, h: 200, unit: 'px' },
      ],
      substream: 'rtsp://viewer@10.0.0.5/sub',
      hwaccel: 'vaapi',
    });
    expect(parseCamera('cam-1', formatCamera(c))).toEqual(c);
    // The command's defaults apply where the camera says nothing; its own regions replace the command's.
    const d = { fit: 'squash' as const, fps: 1, regions: [parseRegion('0,0,1,1')] };
    expect(parseCamera('c', 'a.mp4', d)).toMatchObject({ fit: 'squash', fps: 1, regions: [{ name: 'r1' }] });
    expect(parseCamera('c', 'a.mp4 roi=x:0,0,0.5,1', d).regions.map((r) => r.name)).toEqual(['x']);
    expect(parseCamera('c', 'a.mp4')).toMatchObject({ fit: 'crop', fps: 5, regions: [] });
  });

  it('refuses, naming the camera and what is wrong, and never showing a password', () => {
    const bad: [string, RegExp][] = [
      ['cam-1', /give ID=SOURCE/],
      ['cam 1=a.mp4', /its name must be/],
      ['cam-1=rtsp://u:hunter2@h/x fit=zoom', /camera cam-1 \(rtsp:\/\/u:\*\*\*@h\/x\): fit "zoom" is not one of crop, squash, letterbox/], // prettier-ignore
      ['cam-1=a.mp4 fps=0', /fps "0" must be a number above 0/],
      ['cam-1=a.mp4 size=3', /"size=3" is not one of fit=, roi=, fps=, substream=, hwaccel=/],
      ['cam-1=a.mp4 roi=0,0,0.6,0.5 roi=0.5,0,0.6,0.5', /x \+ w and y \+ h must be at most 1/],
      ['cam-1=a.mp4 roi=0,0,10.5,20', /in pixels, every value must be a whole number/],
      ['cam-1=a.mp4 roi=1,2,3', /four numbers are needed/],
      ['cam-1=a.mp4 roi=a:0,0,1,1 roi=a:0,0,0.5,0.5', /two regions are named a/],
      ['cam-1=a.mp4 roi=0,0,0,5', /width and height must be above 0/],
    ];
    for (const [text, why] of bad) {
      expect(() => parseCameraFlag(text), text).toThrow(why);
      try {
        parseCameraFlag(text);
      } catch (err) {
        expect((err as Error).message).not.toContain('hunter2');
      }
    }
  });
});

describe('backoff and queue', () => {
  it('waits 1 s, doubling to 30 s, within +-20 %; a frame resets it', () => {
    const mid = new Backoff(1000, 30_000, 0.2, () => 0.5);
    expect(Array.from({ length: 8 }, () => mid.next())).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    mid.reset();
    expect(mid.next()).toBe(1000);
    expect(new Backoff(1000, 30_000, 0.2, () => 0).next()).toBe(800);
    expect(new Backoff(1000, 30_000, 0.2, () => 1).next()).toBe(1200);
  });

  it('keeps the newest frames, dropping and counting the oldest; closing ends the reader after what is queued', async () => {
    const dropped: number[] = [];
    const q = new FrameQueue<number>(2, (d) => dropped.push(d));
    for (let i = 1; i <= 5; i++) q.push(i);
    expect(dropped).toEqual([1, 2, 3]);
    q.close();
    const got: number[] = [];
    for await (const x of q) got.push(x);
    expect(got).toEqual([4, 5]);
  });
});

/** A 4 s, 240x80 video at 25 frames/s: red, green and blue thirds (made once). */
function threeColourVideo(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'cascade-cam-')), 'rgb.mp4');
  const colour = (c: string) => ['-f', 'lavfi', '-i', `color=c=${c}:s=80x80:r=25:d=4`];
  execFileSync('ffmpeg', ['-v', 'error', ...colour('red'), ...colour('lime'), ...colour('blue'),
    '-filter_complex', 'hstack=inputs=3', '-c:v', 'libx264', '-pix_fmt', 'yuv444p', '-qp', '0', file]); // prettier-ignore
  return file;
}

/** Mean R, G, B of each of a planar frame's columns `from` to `to` (fractions of the width). */
function meanColour(f: CameraFrame, size: number, from = 0, to = 1): number[] {
  const plane = size * size;
  return [0, 1, 2].map((c) => {
    let sum = 0;
    let n = 0;
    for (let y = 0; y < size; y++)
      for (let x = Math.floor(from * size); x < Math.ceil(to * size); x++) {
        sum += f.pixels[c * plane + y * size + x]!;
        n++;
      }
    return Math.round(sum / n);
  });
}

describe('a camera decoded by ffmpeg (a file, read at its own rate)', () => {
  const video = threeColourVideo();

  async function frames(text: string, size = 8): Promise<{ frames: CameraFrame[]; metrics: string; camera: Camera }> {
    const registry = new Registry();
    const camera = new Camera(parseCamera('cam-1', text), { size, metrics: new CameraMetrics(registry), queue: 100 }).start(); // prettier-ignore
    const out: CameraFrame[] = [];
    for await (const f of camera.frames()) out.push(f);
    return { frames: out, metrics: await registry.metrics(), camera };
  }

  it('takes frames at its rate from every decoded frame, each region cut, fitted and labelled; the file ends', async () => {
    const { frames: got, metrics, camera } = await frames(`${video} fps=5 fit=squash roi=left:0,0,0.33,1 roi=right:160,0,80,80`); // prettier-ignore
    expect(camera.state).toBe('ended');
    const left = got.filter((f) => f.region === 'left');
    const right = got.filter((f) => f.region === 'right');
    // 100 frames decoded over 4 s, 5 a second taken (one either side, by timing).
    expect(left.length).toBeGreaterThanOrEqual(19);
    expect(left.length).toBeLessThanOrEqual(21);
    expect(right.map((f) => f.id)).toEqual(left.map((f) => f.id));
    expect(meanColour(left[3]!, 8)[0]).toBeGreaterThan(240);
    expect(meanColour(left[3]!, 8)[2]).toBeLessThan(15);
    expect(meanColour(right[3]!, 8)[2]).toBeGreaterThan(240);
    expect(meanColour(right[3]!, 8)[0]).toBeLessThan(15);
    expect(metrics).toMatch(/cascade_camera_frames_decoded_total\{edge="cam-1"\} 100\b/);
    expect(metrics).toMatch(new RegExp(`cascade_camera_frames_taken_total\\{edge="cam-1"\\} ${left.length}\\b`));
  }, 30_000);

  it('fits a wide frame: crop keeps the centre square, squash the whole width, letterbox pads above and below', async () => {
    const one = async (fit: string) => (await frames(`${video} fps=1 fit=${fit}`, 15)).frames[1]!;
    const [r, g, b] = [0, 1, 2];
    const crop = await one('crop'); // the centre square: green
    expect(meanColour(crop, 15)[g]).toBeGreaterThan(240);
    expect(meanColour(crop, 15)[r]).toBeLessThan(15);
    const squash = await one('squash'); // every third, narrowed
    expect(meanColour(squash, 15, 0, 0.3)[r]).toBeGreaterThan(240);
    expect(meanColour(squash, 15, 0.4, 0.6)[g]).toBeGreaterThan(240);
    expect(meanColour(squash, 15, 0.7, 1)[b]).toBeGreaterThan(240);
    const box = await one('letterbox'); // the whole width, 5 rows high, black above and below
    const plane = 15 * 15;
    const at = (x: number, y: number) => [0, 1, 2].map((c) => box.pixels[c * plane + y * 15 + x]!);
    expect(at(1, 0)).toEqual([0, 0, 0]);
    expect(at(1, 7)[r]).toBeGreaterThan(240);
    expect(at(13, 7)[b]).toBeGreaterThan(240);
    expect(at(1, 14)).toEqual([0, 0, 0]);
  }, 30_000);

  it('a file that is not video fails once, saying what ffmpeg said; a missing one too', async () => {
    const junk = join(mkdtempSync(join(tmpdir(), 'cascade-cam-')), 'notes.mp4');
    writeFileSync(junk, 'not a video at all\n'.repeat(50));
    const a = await frames(junk);
    expect(a.frames).toEqual([]);
    expect(a.camera.state).toBe('failed');
    expect(a.camera.lastError).toMatch(/Invalid data found when processing input/);
    const b = await frames('/nonexistent/cam.mp4');
    expect(b.camera.state).toBe('failed');
    expect(b.camera.lastError).toMatch(/No such file or directory/);
  }, 30_000);

  it('uses the substream and the hardware decoder when given, RTSP over TCP', () => {
    const args = ffmpegArgs(parseCamera('c', 'rtsp://h/main substream=rtsp://h/sub hwaccel=vaapi'), 32);
    expect(args.slice(args.indexOf('-hwaccel'), args.indexOf('-i') + 2)).toEqual(['-hwaccel', 'vaapi', '-rtsp_transport', 'tcp', '-i', 'rtsp://h/sub']); // prettier-ignore
  });
});
