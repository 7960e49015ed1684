import { BUCKETS, CASCADE_VERSION, createRegistry, setBuildInfo, snapshotGauges } from '@cascade/service';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { OutboxUse } from './outbox.js';
import type { EdgeResult } from './path.js';
import type { OffloadOutcome } from './request.js';

/** An edge agent's Prometheus metrics (names are part of the contract; see the package README). */
export class EdgeMetrics {
  readonly registry: Registry;
  readonly frames: Counter<'outcome' | 'model_version'>;
  readonly exits: Counter<'exit' | 'tier'>;
  readonly stageSeconds: Histogram<'stage'>;
  readonly offloadSeconds: Histogram<'result'>;
  readonly offloadBytes: Histogram;
  readonly frameSeconds: Histogram<'outcome'>;
  readonly confidence: Histogram<'tier'>;
  readonly inflight: Gauge;
  readonly cloudReachable: Gauge;
  readonly expectedOffloadRate: Gauge;
  readonly fallbacks: Counter<'reason'>;
  readonly resultsPublished: Counter;
  readonly resultsDropped: Counter<'reason'>;
  readonly resultsPending: Gauge;
  readonly threshold: Gauge<'exit'>;
  readonly agreement: Gauge<'exit'>;
  readonly estimatedLoss: Gauge;
  readonly accuracyBudget: Gauge;
  readonly shadowRecords: Gauge;
  readonly shadowRequests: Counter<'result'>;
  readonly controllerEnabled: Gauge;
  readonly controllerBinding: Gauge<'constraint'>;
  readonly offloadCap: Gauge;
  readonly configUpdates: Counter<'result'>;
  readonly offloadModes: Counter<'mode'>;
  readonly modelSwitches: Counter<'result'>;
  private readonly build: Record<string, string>;
  /** Read when /metrics is scraped. */
  readonly probe = {
    reachable: (): number => 0,
    pending: (): number => 0,
    outbox: (): OutboxUse | undefined => undefined,
  };

  constructor(
    labels: { edge: string; model: string; modelVersion: string; backend: string },
    /** The process's metrics too (off for one of several cameras in a process: the host reports them once). */
    processMetrics = true,
  ) {
    this.build = {
      component: 'edge',
      version: CASCADE_VERSION,
      model: labels.model,
      model_version: labels.modelVersion,
      ep: labels.backend,
    };
    this.registry = createRegistry({ edge: labels.edge }, this.build, processMetrics);
    const registers = [this.registry];
    this.frames = new Counter({
      name: 'cascade_edge_frames_total',
      help: 'Frames answered, by outcome (exited, offloaded, fallback, error) and the model version that answered.',
      labelNames: ['outcome', 'model_version'],
      registers,
    });
    this.exits = new Counter({
      name: 'cascade_exit_total',
      help: 'Frames answered at each exit, on the edge or in the cloud.',
      labelNames: ['exit', 'tier'],
      registers,
    });
    this.stageSeconds = new Histogram({
      name: 'cascade_edge_stage_seconds',
      help: 'onnxruntime time of one edge stage for one frame (inference thread).',
      labelNames: ['stage'],
      buckets: [...BUCKETS.stageSeconds],
      registers,
    });
    this.offloadSeconds = new Histogram({
      name: 'cascade_offload_seconds',
      help: 'Offload round trip, by result: ok, timeout, no_responders, an error code, error.',
      labelNames: ['result'],
      buckets: [...BUCKETS.offloadSeconds],
      registers,
    });
    this.offloadBytes = new Histogram({
      name: 'cascade_offload_bytes',
      help: 'Bytes of each offload request on the wire (image and state, packed as --compression says).',
      buckets: [...BUCKETS.bytes],
      registers,
    });
    this.frameSeconds = new Histogram({
      name: 'cascade_edge_frame_seconds',
      help: 'Time from taking a frame in to its result, by outcome.',
      labelNames: ['outcome'],
      buckets: [...BUCKETS.offloadSeconds],
      registers,
    });
    this.confidence = new Histogram({
      name: 'cascade_edge_confidence',
      help: 'Max-softmax confidence of each answer, by tier.',
      labelNames: ['tier'],
      buckets: [...BUCKETS.confidence],
      registers,
    });
    this.inflight = new Gauge({ name: 'cascade_edge_inflight', help: 'Offloads awaiting a reply.', registers });
    const probe = this.probe;
    this.cloudReachable = new Gauge({
      name: 'cascade_cloud_reachable',
      help: '1 while connected to NATS and the last offload got a reply from a worker; 0 after a timeout, no responders or while disconnected.',
      registers,
      collect() {
        this.set(probe.reachable());
      },
    });
    this.fallbacks = new Counter({
      name: 'cascade_edge_fallbacks_total',
      help: 'Hard frames answered locally, by reason: disconnected, timeout, no_responders, a worker error code, ...',
      labelNames: ['reason'],
      registers,
    });
    this.resultsPublished = new Counter({
      name: 'cascade_edge_results_published_total',
      help: 'Results acknowledged by the results stream (JetStream).',
      registers,
    });
    this.resultsDropped = new Counter({
      name: 'cascade_edge_results_dropped_total',
      help: 'Results dropped from the outbox before the stream had them, by reason: full (size or count limit) or expired (age limit).',
      labelNames: ['reason'],
      registers,
    });
    this.resultsPending = new Gauge({
      name: 'cascade_edge_results_pending',
      help: 'Results in the outbox, not yet acknowledged by the results stream.',
      registers,
      collect() {
        this.set(probe.pending());
      },
    });
    for (const reason of ['full', 'expired']) this.resultsDropped.inc({ reason }, 0);
    snapshotGauges(this.registry, () => probe.outbox(), [
      ['cascade_edge_outbox_bytes', "Memory the outbox's results take (bytes, id and subject, plus a fixed overhead each).", (u) => u.bytes],
      ['cascade_edge_outbox_max_bytes', "The outbox's size limit; past it the oldest results are dropped.", (u) => u.maxBytes],
      ['cascade_edge_outbox_oldest_age_seconds', 'Age of the oldest result in the outbox.', (u) => u.oldestAgeMs / 1000],
      ['cascade_edge_outbox_max_age_seconds', "The outbox's age limit; older results are dropped.", (u) => u.maxAgeMs / 1000],
    ]); // prettier-ignore
    this.expectedOffloadRate = new Gauge({
      name: 'cascade_edge_expected_offload_rate',
      help: 'Offload rate the operating point promised on the test set (alerting band centre); -1 when thresholds are custom or the controller moves them.',
      registers,
    });
    for (const outcome of ['exited', 'offloaded', 'fallback', 'error'])
      this.frames.inc({ outcome, model_version: labels.modelVersion }, 0);
    this.threshold = new Gauge({
      name: 'cascade_edge_threshold',
      help: 'Confidence threshold in force at each exit (moved by the controller, or set by the operating point).',
      labelNames: ['exit'],
      registers,
    });
    this.agreement = new Gauge({
      name: 'cascade_edge_exit_agreement_ratio',
      help: "Of the shadow-sampled frames that leave at an exit under the thresholds in force, the share whose class is the last exit's (absent while none leave there).",
      labelNames: ['exit'],
      registers,
    });
    this.estimatedLoss = new Gauge({
      name: 'cascade_edge_estimated_accuracy_loss',
      help: 'Accuracy the cascade is estimated to give up against the last exit, from the shadow records (0.01 = 1 point; NaN: no records).',
      registers,
    });
    this.estimatedLoss.set(NaN);
    this.accuracyBudget = new Gauge({
      name: 'cascade_edge_accuracy_budget',
      help: 'Accuracy the controller may give up against the last exit (the operating point max_drop, or as configured).',
      registers,
    });
    this.shadowRecords = new Gauge({
      name: 'cascade_edge_shadow_records',
      help: 'Shadow records (frames finished to the last exit) the accuracy estimate rests on.',
      registers,
    });
    this.shadowRequests = new Counter({
      name: 'cascade_edge_shadow_requests_total',
      help: 'Frames sampled for shadowing (exited frames sent again at low priority, offloaded ones asking for every exit), by result: recorded, refused (a busy worker), failed, skipped (too many in flight).',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['recorded', 'refused', 'failed', 'skipped']) this.shadowRequests.inc({ result }, 0);
    this.controllerEnabled = new Gauge({
      name: 'cascade_edge_controller_enabled',
      help: '1 while the threshold controller runs.',
      registers,
    });
    this.controllerBinding = new Gauge({
      name: 'cascade_edge_controller_binding',
      help: "1 for the constraint that holds the controller's thresholds now: none, no_data, accuracy, cloud_pressure, bandwidth, off.",
      labelNames: ['constraint'],
      registers,
    });
    this.offloadCap = new Gauge({
      name: 'cascade_edge_offload_cap',
      help: 'Largest offload rate cloud pressure and the bandwidth budget allow now (1: no cap).',
      registers,
    });
    this.offloadCap.set(1);
    this.configUpdates = new Counter({
      name: 'cascade_edge_config_updates_total',
      help: 'Changes of the fleet configuration taken by this edge, by result: applied, or refused (invalid; the edge kept its settings).',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['applied', 'refused']) this.configUpdates.inc({ result }, 0);
    this.offloadModes = new Counter({
      name: 'cascade_edge_offload_mode_total',
      help: 'Offloads by the mode --mode auto chose for them: state or image.',
      labelNames: ['mode'],
      registers,
    });
    this.modelSwitches = new Counter({
      name: 'cascade_edge_model_switches_total',
      help: "Model versions the edge was asked to run by its model's rollout, by result: switched, or refused (it kept its version).",
      labelNames: ['result'],
      registers,
    });
    for (const result of ['switched', 'refused']) this.modelSwitches.inc({ result }, 0);
  }

  /** Counts a frame's result. */
  result(r: EdgeResult): void {
    this.frames.inc({ outcome: r.outcome, model_version: r.model_version });
    this.frameSeconds.observe({ outcome: r.outcome }, r.latency_ms / 1000);
    if (r.fallback_reason) this.fallbacks.inc({ reason: r.fallback_reason });
    if (r.exit >= 0) {
      this.exits.inc({ exit: String(r.exit), tier: r.tier });
      this.confidence.observe({ tier: r.tier }, r.confidence);
    }
  }

  /** Counts an offload that reached the wire: its size and how long its answer (or failure) took. */
  offloaded(out: OffloadOutcome, seconds: number): void {
    if (out.bytes === 0) return;
    this.offloadBytes.observe(out.bytes);
    this.offloadSeconds.observe({ result: out.kind === 'answered' ? 'ok' : out.reason }, seconds);
  }

  /** The model version now running (in cascade_build_info); the exits' thresholds are the new model's. */
  setModel(model: string, version: string): void {
    setBuildInfo(this.registry, [{ ...this.build, model, model_version: version }]);
    this.threshold.reset();
    this.agreement.reset();
  }
}
