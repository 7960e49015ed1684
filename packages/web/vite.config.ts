import { defineConfig } from 'vite';

// onnxruntime-web's WebAssembly binary is found through `new URL(..., import.meta.url)` in its bundle, so Vite emits
// it as an asset beside the page's script; nothing else to copy.
export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 2048 },
});
