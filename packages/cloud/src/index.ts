/** @cascade/cloud: the cloud worker. */
export { Batcher, type BatchObserver, type BatcherOptions, type Job, type JobReply } from './batcher.js';
export { natsStats, WorkerMetrics } from './metrics.js';
export { RequestError } from './errors.js';
export {
  compileWorkerOptions,
  BATCH_DEFAULTS,
  DEFAULT_WORKER_OPTIONS,
  MAX_BATCH,
  type CompiledWorkerOptions,
  type WorkerOptions,
} from './options.js';
export { peekRequestId, validateRequest, type ValidRequest } from './validate.js';
export { CloudWorker, type WorkerCounts, type WorkerState } from './worker.js';
