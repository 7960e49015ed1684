// The page: loads the model named by ?model= (default: the bundled model beside the page), connects to the cloud
// when ?nats= names a NATS WebSocket URL (?id= the edge id, ?user= and ?pass= its login), and shows what it does.
import { BrowserEdge, type BrowserResult } from './edge.js';

declare global {
  interface Window {
    cascade: { BrowserEdge: typeof BrowserEdge; edge?: BrowserEdge; ready: Promise<BrowserEdge> };
  }
}

const params = new URLSearchParams(location.search);
const model = params.get('model') ?? './models/ranet-cifar10';
const status = document.getElementById('status')!;
const cloud = document.getElementById('cloud')!;
const last = document.getElementById('last')!;

function showCloud(state: string, text: string): void {
  cloud.dataset.state = state;
  cloud.textContent = text;
}

/** Shows a frame's answer, and what it says of the cloud. */
function show(r: BrowserResult): void {
  last.textContent = `class ${r.class} at exit ${r.exit} (${r.tier}, ${r.outcome}${r.fallback_reason ? `: ${r.fallback_reason}` : ''}), ${r.latency_ms.toFixed(1)} ms`; // prettier-ignore
  if (r.outcome === 'offloaded') showCloud('connected', `cloud: answering (${r.worker})`);
  else if (r.outcome === 'fallback' && r.fallback_reason !== 'no_cloud')
    showCloud('unreachable', `cloud: no worker answered (${r.fallback_reason}); hard frames are answered here`);
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
  edge.process = async (pixels) => {
    const r = await process(pixels);
    show(r);
    return r;
  };
  return edge;
})();
window.cascade = { BrowserEdge, ready };
ready.then(
  (edge) => {
    window.cascade.edge = edge;
    const m = edge.manifest;
    status.textContent = `${m.name}@${m.version}: edge stages 0-${edge.split - 1} loaded (onnxruntime-web, WebAssembly)`;
    status.dataset.state = 'ready';
  },
  (err: Error) => {
    status.textContent = `cannot load ${model}: ${err.message}`;
    status.dataset.state = 'failed';
  },
);
