// The page: loads the model named by ?model= (default: the bundled model beside the page) and shows what it does.
import { BrowserEdge } from './edge.js';

declare global {
  interface Window {
    cascade: { BrowserEdge: typeof BrowserEdge; edge?: BrowserEdge; ready: Promise<BrowserEdge> };
  }
}

const params = new URLSearchParams(location.search);
const model = params.get('model') ?? './models/ranet-cifar10';
const status = document.getElementById('status')!;
const ready = BrowserEdge.load(model, params.get('op') ? { operatingPoint: params.get('op')! } : {});
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
