import { ConfigError, elementCount } from '@cascade/proto';
import type { ExecutionProvider, Feeds } from './stages.js';
import type { ModelDir } from './manifest.js';

/** What is missing when an execution provider cannot start, and how to get it. */
export function providerHelp(ep: ExecutionProvider, cause: string): string {
  switch (ep) {
    case 'webgpu':
      return (
        `execution provider webgpu: no usable WebGPU adapter (onnxruntime: ${cause.trim().split('\n')[0]}). ` +
        'onnxruntime-node runs WebGPU through Dawn over Vulkan: on an NVIDIA GPU install the driver with its Vulkan ' +
        'ICD and the Vulkan loader (Debian: libvulkan1); without a GPU, Mesa 25 lavapipe works (Debian bookworm: ' +
        'apt-get install -t bookworm-backports mesa-vulkan-drivers). Set XDG_RUNTIME_DIR.'
      );
    case 'cuda':
      return (
        `execution provider cuda: onnxruntime-node's CUDA provider libraries are missing (onnxruntime: ${cause.trim().split('\n')[0]}). ` +
        'They are not bundled with the npm package: use the worker-cuda image (deploy/docker/Dockerfile, target ' +
        'worker-cuda), or install onnxruntime-node with --onnxruntime-node-install=cuda12 on a machine with CUDA 12.'
      );
    case 'cpu':
      return `execution provider cpu failed: ${cause}`;
  }
}

/**
 * Runs every stage once on a batch of one blank image through the runner, chaining state as the manifest says, so
 * that a provider that cannot run the graphs fails at start (not on the first request) and GPU kernels are compiled
 * before traffic arrives. Throws ConfigError with providerHelp() on failure.
 */
export async function warmUp(
  runner: { run(stage: number, feeds: Feeds): Promise<{ outputs: Feeds }> },
  model: ModelDir,
  ep: ExecutionProvider,
  first = 0,
): Promise<void> {
  const m = model.manifest;
  let carried: Feeds = {};
  try {
    for (let s = first; s < m.stages.length; s++) {
      const feeds: Feeds = {
        image: { data: new Uint8Array(elementCount(m.input.shape)), dims: [1, ...m.input.shape] },
      };
      for (const t of m.stages[s]!.inputs) {
        if (t.name === 'image') continue;
        const shape = t.shape.slice(1);
        feeds[t.name] = carried[t.name] ?? {
          data: new Float32Array(elementCount(shape)),
          dims: [1, ...shape],
        };
      }
      carried = (await runner.run(s, feeds)).outputs;
    }
  } catch (err) {
    throw new ConfigError(providerHelp(ep, (err as Error).message), { cause: err });
  }
}
