/** @cascade/edge: the edge agent. */
export { EdgeAgent, type EdgeResult, type Outcome } from './agent.js';
export { liveRoutes, type LiveSummary } from './live.js';
export { EdgeMetrics } from './metrics.js';
export { compileEdgeOptions, DEFAULT_EDGE_OPTIONS, EdgeConfigError, OFFLOAD_MODES, type EdgeOptions, type OffloadMode } from './options.js';
export { openSource, SourceError, toPlanar, type Frame, type SourceOptions } from './sources.js';
export { formatSummary, summarise, type Percentiles, type Summary } from './summary.js';
