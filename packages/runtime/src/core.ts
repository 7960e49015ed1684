/**
 * @cascade/runtime/core: the model's contract without Node or onnxruntime: manifest types and checks, operating
 * points, carried state, and the exit rule. Safe to bundle for a browser.
 */
export {
  carriedOutputs,
  checkManifest,
  MODEL_FORMAT,
  ModelDirError,
  operatingPoint,
  type ExitSpec,
  type Manifest,
  type ModelDir,
  type OperatingPoint,
  type StageSpec,
  type TensorSpec,
} from './manifest-core.js';
export { decide, decideProbabilities, exitsHere, softmax, type ExitDecision } from './policy.js';
