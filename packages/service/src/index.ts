/** @cascade/service: plumbing every Cascade command shares (flags, NATS, results stream, metrics and health, logs). */
export {
  bytesFlag,
  durationFlag,
  FlagError,
  flagSource,
  flagTable,
  isMain,
  numberFlag,
  optionFlags,
  optionsFromFlags,
  parseFlags,
  usage,
  withFlagTable,
  type Flag,
} from './flags.js';
export {
  BUCKETS,
  CASCADE_VERSION,
  createRegistry,
  healthRoutes,
  serveMetrics,
  setBuildInfo,
  snapshotGauges,
  type Lifecycle,
  type MetricsServer,
  type Route,
} from './metrics.js';
export { credsName, NATS_AUTH_FLAGS, natsAuthFromFlags, natsConnectOptions, type NatsAuth } from './nats-auth.js';
export {
  DEFAULT_RESULTS_LIMITS,
  ensureResultsStream,
  ResultsStreamMissing,
  resultsStreamUse,
  type ResultsStreamLimits,
  type ResultsStreamOptions,
  type ResultsStreamState,
  type ResultsStreamUse,
} from './streams.js';
export { LinkError, NatsLink, RECONNECT_JITTER_MS, RECONNECT_WAIT_MS, type LinkOptions, type Log } from './link.js';
export { stderrLog } from './log.js';
export {
  DENIED_RETRY_MS,
  ensureFleetBuckets,
  isPermissionError,
  KeyWatch,
  openBucket,
  Serial,
  type FleetBuckets,
} from './fleet.js';
export {
  cachedModelDir,
  defaultModelCache,
  fetchModel,
  listModels,
  MODEL_FLAGS,
  MODEL_OPTIONS,
  MODEL_REF,
  pushModel,
  RegistryError,
  removeModel,
  resolveModel,
  type PushResult,
  type RegistryEntry,
} from './registry.js';
