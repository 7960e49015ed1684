// The page: loads the model named by ?model= (default: the bundled model beside the page), connects to the cloud
// when ?nats= names a NATS WebSocket URL (?id= the edge id, ?user= and ?pass= its login), and runs the device camera
// through the edge (the Start button, or ?camera=on; ?fps= paces it, default 10) with a live view of its answers,
// its offload rate and latency.
import { BrowserEdge, type BrowserResult } from './edge.js';

declare global {
  interface Window {
    cascade: { BrowserEdge: typeof BrowserEdge; edge?: BrowserEdge; ready: Promise<BrowserEdge>; camera?: Camera };
  }
}

const params = new URLSearchParams(location.search);
const model = params.get('model') ?? './models/ranet-cifar10';
const $ = (id: string) => document.getElementById(id)!;
const status = $('status');
const cloud = $('cloud');
const last = $('last');
const stats = $('stats');
const video = $('video') as HTMLVideoElement;
const cameras = $('cameras') as HTMLSelectElement;
const start = $('start') as HTMLButtonElement;

function showCloud(state: string, text: string): void {
  cloud.dataset.state = state;
  cloud.textContent = text;
}

/** Shows a frame's answer, what it says of the cloud, and the edge's running figures. */
function show(edge: BrowserEdge, r: BrowserResult): void {
  last.textContent = `${r.class_name} (class ${r.class}) at exit ${r.exit}, ${r.tier}, ${r.outcome}${r.fallback_reason ? `: ${r.fallback_reason}` : ''}, ${r.latency_ms.toFixed(1)} ms`; // prettier-ignore
  last.dataset.tier = r.tier;
  if (r.outcome === 'offloaded') showCloud('connected', `cloud: answering (${r.worker})`);
  else if (r.outcome === 'fallback' && r.fallback_reason !== 'no_cloud')
    showCloud('unreachable', `cloud: no worker answered (${r.fallback_reason}); hard frames are answered here`);
  const s = edge.stats.summary();
  stats.textContent =
    `frames ${s.frames}, ${s.fps.toFixed(1)}/s; sent to the cloud ${(s.offload_rate * 100).toFixed(1)} % ` +
    `(${s.fallbacks} answered here instead); latency p50 ${s.p50_ms.toFixed(1)} ms, p99 ${s.p99_ms.toFixed(1)} ms` +
    (edge.pendingResults ? `; ${edge.pendingResults} results waiting for the cloud` : '');
}

/**
 * The camera: each frame's centre square scaled to the model's input (RGB, planar), one frame at a time through the
 * edge, at most `fps` a second.
 */
class Camera {
  private running = false;
  private readonly canvas = document.createElement('canvas');

  constructor(
    private readonly edge: BrowserEdge,
    private readonly fps: number,
  ) {
    const [, h, w] = edge.manifest.input.shape as [number, number, number];
    this.canvas.width = w;
    this.canvas.height = h;
  }

  async start(deviceId?: string): Promise<void> {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : { facingMode: 'environment' },
      audio: false,
    });
    video.srcObject = stream;
    await video.play();
    this.running = true;
    void this.loop();
  }

  stop(): void {
    this.running = false;
    for (const t of (video.srcObject as MediaStream | null)?.getTracks() ?? []) t.stop();
    video.srcObject = null;
  }

  /** The current video frame as the model's uint8 input (channels first). */
  grab(): Uint8Array {
    const { width: w, height: h } = this.canvas;
    const ctx = this.canvas.getContext('2d', { willReadFrequently: true })!;
    const side = Math.min(video.videoWidth, video.videoHeight);
    ctx.drawImage(video, (video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side, 0, 0, w, h);
    const rgba = ctx.getImageData(0, 0, w, h).data;
    const px = new Uint8Array(3 * w * h);
    for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) px[c * w * h + i] = rgba[i * 4 + c]!;
    return px;
  }

  private async loop(): Promise<void> {
    let n = 0;
    while (this.running) {
      const due = performance.now() + 1000 / this.fps;
      if (video.readyState >= 2 && video.videoWidth > 0) await this.edge.process(this.grab(), `camera#${++n}`);
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    }
  }
}

async function listCameras(): Promise<void> {
  const devices = (await navigator.mediaDevices?.enumerateDevices()) ?? [];
  cameras.replaceChildren(
    ...devices
      .filter((d) => d.kind === 'videoinput')
      .map((d, i) => new Option(d.label || `camera ${i + 1}`, d.deviceId)),
  );
}

const ready = (async () => {
  const edge = await BrowserEdge.load(model, params.get('op') ? { operatingPoint: params.get('op')! } : {});
  const url = params.get('nats');
  if (url) {
    showCloud('connecting', `cloud: connecting to ${url}`);
    try {
      await edge.connect({ url, id: params.get('id') ?? 'web', ...(params.get('user') ? { user: params.get('user')!, pass: params.get('pass') ?? '' } : {}) }); // prettier-ignore
      showCloud('connected', `cloud: connected to ${url}`);
    } catch (err) {
      showCloud('unreachable', `cloud: cannot connect to ${url} (${(err as Error).message}); every frame is answered here`); // prettier-ignore
    }
  } else showCloud('none', 'cloud: none (add ?nats=wss://... to offload hard frames)');
  const process = edge.process.bind(edge);
  edge.process = async (pixels, frame) => {
    const r = await process(pixels, frame);
    show(edge, r);
    return r;
  };
  return edge;
})();
window.cascade = { BrowserEdge, ready };
ready.then(
  async (edge) => {
    window.cascade.edge = edge;
    const m = edge.manifest;
    status.textContent = `${m.name}@${m.version}: edge stages 0-${edge.split - 1} loaded (onnxruntime-web, WebAssembly)`;
    status.dataset.state = 'ready';
    if (!navigator.mediaDevices?.getUserMedia) {
      start.disabled = true;
      start.textContent = 'no camera here (a camera needs https or localhost)';
      return;
    }
    const camera = new Camera(edge, Number(params.get('fps') ?? 10));
    window.cascade.camera = camera;
    const toggle = async () => {
      if (start.dataset.state === 'running') {
        camera.stop();
        start.dataset.state = 'stopped';
        start.textContent = 'Start camera';
        return;
      }
      try {
        await camera.start(cameras.value || undefined);
        start.dataset.state = 'running';
        start.textContent = 'Stop camera';
        await listCameras(); // labels are shown once the camera is allowed
      } catch (err) {
        start.textContent = `camera: ${(err as Error).message}`;
      }
    };
    start.addEventListener('click', () => void toggle());
    await listCameras();
    if (params.get('camera') === 'on') await toggle();
  },
  (err: Error) => {
    status.textContent = `cannot load ${model}: ${err.message}`;
    status.dataset.state = 'failed';
  },
);
