/** @cascade/runtime: what edge and cloud share for inference: model directories, the exit rule and the stage runner. */
export * from './core.js';
export { loadModelDir } from './manifest.js';
export { InferenceError, StageRunner, type StageResult } from './runner.js';
export { runCascade, type ExitRule, type StagePass } from './cascade.js';
export {
  createExecutor,
  INFERENCE_THREADS,
  InlineRunner,
  INLINE_MAX_MS,
  type InferenceThread,
  type StageExecutor,
} from './inline.js';
export {
  BACKENDS,
  EXECUTION_PROVIDERS,
  type Backend,
  StageSessions,
  type ExecutionProvider,
  type Feeds,
  type HostTensor,
  type StageSessionOptions,
} from './stages.js';
export { providerHelp, warmUp } from './providers.js';
export { fusedOutputs, fuseStages } from './fuse.js';
export { checkAgainstCpu, PARITY_TOLERANCE, type ParityReport } from './parity.js';
