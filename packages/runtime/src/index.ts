/** @cascade/runtime: what edge and cloud share: model directories, the exit rule and the stage runner. */
export {
  MODEL_FORMAT,
  ModelDirError,
  carriedOutputs,
  loadModelDir,
  operatingPoint,
  type ExitSpec,
  type Manifest,
  type ModelDir,
  type OperatingPoint,
  type StageSpec,
  type TensorSpec,
} from './manifest.js';
export { decide, exitsHere, softmax, type ExitDecision } from './policy.js';
export { InferenceError, StageRunner, type StageResult } from './runner.js';
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
export { FlagError, isMain, numberFlag, parseFlags, usage, type Flag } from './flags.js';
export { BUCKETS, CASCADE_VERSION, createRegistry, serveMetrics, type MetricsServer, type Route } from './metrics.js';
export { NATS_AUTH_FLAGS, natsAuthFromFlags, natsConnectOptions, type NatsAuth } from './nats-auth.js';
export { ensureResultsStream } from './streams.js';
export { LinkError, NatsLink, RECONNECT_JITTER_MS, RECONNECT_WAIT_MS, type LinkOptions, type Log } from './link.js';
