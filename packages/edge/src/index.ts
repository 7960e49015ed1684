/** @cascade/edge: the edge agent. */
export { EdgeAgent, type EdgeResult, type EdgeState, type Outcome, type SharedEdge } from './agent.js';
export { CameraHost, type HostOptions } from './host.js';
export { FramePath, type FrameObserver, type Policy } from './path.js';
export { NatsTransport, type Transport } from './transport.js';
export { liveRoutes, type LiveSummary } from './live.js';
export { EdgeMetrics } from './metrics.js';
export {
  compileEdgeOptions,
  DEFAULT_EDGE_OPTIONS,
  OFFLOAD_MODES,
  type EdgeOptions,
  type OffloadMode,
} from './options.js';
export { openSource, paced, SourceError, toPlanar, type Frame, type SourceOptions } from './sources.js';
export { formatSummary, summarise, SummaryBuilder, type Percentiles, type Summary } from './summary.js';
export { buildInferRequest, FALLBACK_REASONS, requestFailure, type FallbackReason } from './request.js';
export { requestSettings } from './model.js';
export { DEFAULT_OUTBOX, Outbox, type OutboxEntry, type OutboxOptions } from './outbox.js';
export { frameResultJson, readResults, ResultsPublisher, type FrameResult, type ResultStats } from './results.js';
export { QuantileSketch } from './sketch.js';
export { ensureResultsStream } from '@cascade/service';
