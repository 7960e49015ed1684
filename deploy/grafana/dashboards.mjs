// Writes the Grafana dashboards (dashboards/*.json) from the panel lists below: `node deploy/grafana/dashboards.mjs`.
// Every panel's query is run against a real Prometheus scraping the demo in tests/src/dashboards.test.ts.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const R = '$__rate_interval';
const frames = (sel = '') => `rate(cascade_edge_frames_total${sel}[${R}])`;
const offloadRate = (by, sel = '') => {
  const f = sel ? `,${sel}` : '';
  return `sum${by}(rate(cascade_edge_frames_total{outcome!="exited"${f}}[${R}])) / sum${by}(rate(cascade_edge_frames_total{${sel}}[${R}]))`;
};
const quantile = (q, metric, by = '', sel = '') =>
  `histogram_quantile(${q}, sum by (le${by ? `, ${by}` : ''}) (rate(${metric}_bucket${sel ? `{${sel}}` : ''}[${R}])))`;
const mean = (metric, by, sel = '') =>
  `sum by (${by}) (rate(${metric}_sum${sel ? `{${sel}}` : ''}[${R}])) / sum by (${by}) (rate(${metric}_count${sel ? `{${sel}}` : ''}[${R}]))`;

const EDGE = 'edge=~"$edge"';
const WORKER = 'worker=~"$worker"';

const dashboards = {
  'cascade-fleet': {
    title: 'Cascade / Fleet overview',
    panels: [
      ['Offload rate (all edges)', 'percentunit', [[offloadRate(''), 'offload rate']], 'stat'],
      ['Offload rate per edge', 'percentunit', [[offloadRate(' by (edge) '), '{{edge}}']]],
      ['Frames per second by outcome', 'ops', [[`sum by (outcome) (${frames()})`, '{{outcome}}']]],
      ['Fallbacks per second per edge', 'ops', [[`sum by (edge) (${frames('{outcome="fallback"}')})`, '{{edge}}']]],
      [
        'Answers per exit',
        'ops',
        [[`sum by (exit, tier) (rate(cascade_exit_total[${R}]))`, 'exit {{exit}} ({{tier}})']],
      ],
      ['Mean confidence by tier', 'percentunit', [[mean('cascade_edge_confidence', 'tier'), '{{tier}}']]],
      [
        'Offload latency',
        's',
        [
          [quantile(0.5, 'cascade_offload_seconds'), 'p50'],
          [quantile(0.99, 'cascade_offload_seconds'), 'p99'],
        ],
      ],
      [
        'Bytes per offload',
        'bytes',
        [[`sum(rate(cascade_offload_bytes_sum[${R}])) / sum(rate(cascade_offload_bytes_count[${R}]))`, 'mean']],
      ],
      ['Frames per second by model version', 'ops', [[`sum by (model_version) (${frames()})`, '@{{model_version}}']]],
      [
        'Offload and fallback rate by model version',
        'percentunit',
        [
          [
            `sum by (model_version) (${frames('{outcome!="exited"}')}) / sum by (model_version) (${frames()})`,
            'offloaded @{{model_version}}',
          ],
          [
            `sum by (model_version) (${frames('{outcome="fallback"}')}) / sum by (model_version) (${frames()})`,
            'fell back @{{model_version}}',
          ],
        ],
      ],
      [
        'Agreement with the last exit and estimated loss by model version (mean over edges)',
        'percentunit',
        [
          [
            `avg by (model_version) (cascade_edge_estimated_accuracy_loss * on (edge) group_left (model_version) max by (edge, model_version) (cascade_build_info{component="edge"}))`,
            'estimated loss @{{model_version}}',
          ],
          [
            `avg by (model_version) (avg by (edge) (cascade_edge_exit_agreement_ratio) * on (edge) group_left (model_version) max by (edge, model_version) (cascade_build_info{component="edge"}))`,
            'agreement @{{model_version}}',
          ],
        ],
      ],
      [
        'Worker replies by model version and status',
        'ops',
        [
          [
            `sum by (model_version, status) (rate(cascade_worker_requests_total[${R}]))`,
            '@{{model_version}} {{status}}',
          ],
        ],
      ],
    ],
  },
  'cascade-edge': {
    title: 'Cascade / Edge agent',
    vars: [['edge', 'cascade_edge_frames_total']],
    panels: [
      [
        'Offload rate against the operating point',
        'percentunit',
        [
          [offloadRate(' by (edge) ', EDGE), '{{edge}}'],
          [`cascade_edge_expected_offload_rate{${EDGE}}`, 'promised {{edge}}'],
        ],
      ],
      ['Frames per second by outcome', 'ops', [[`sum by (outcome) (${frames(`{${EDGE}}`)})`, '{{outcome}}']]],
      [
        'Edge stage latency',
        's',
        [
          [quantile(0.5, 'cascade_edge_stage_seconds', 'stage', EDGE), 'p50 stage {{stage}}'],
          [quantile(0.99, 'cascade_edge_stage_seconds', 'stage', EDGE), 'p99 stage {{stage}}'],
        ],
      ],
      [
        'Frame latency p99 by outcome',
        's',
        [[quantile(0.99, 'cascade_edge_frame_seconds', 'outcome', EDGE), '{{outcome}}']],
      ],
      [
        'Offloads by result',
        'ops',
        [[`sum by (result) (rate(cascade_offload_seconds_count{${EDGE}}[${R}]))`, '{{result}}']],
      ],
      ['Offloads in flight', 'short', [[`sum by (edge) (cascade_edge_inflight{${EDGE}})`, '{{edge}}']]],
      ['Cloud reachable', 'short', [[`min by (edge) (cascade_cloud_reachable{${EDGE}})`, '{{edge}}']]],
      [
        'Results stream: pending in the outbox, dropped by its limits',
        'short',
        [
          [`sum by (edge) (cascade_edge_results_pending{${EDGE}})`, 'pending {{edge}}'],
          [
            `sum by (edge, reason) (increase(cascade_edge_results_dropped_total{${EDGE}}[${R}]))`,
            'dropped ({{reason}}) {{edge}}',
          ],
        ],
      ],
      [
        'Answers per exit',
        'ops',
        [[`sum by (exit, tier) (rate(cascade_exit_total{${EDGE}}[${R}]))`, 'exit {{exit}} ({{tier}})']],
      ],
    ],
  },
  'cascade-adaptive': {
    title: 'Cascade / Adaptive control',
    vars: [['edge', 'cascade_edge_threshold']],
    panels: [
      [
        'Estimated accuracy loss against the last exit, and its budget',
        'percentunit',
        [
          [`cascade_edge_estimated_accuracy_loss{${EDGE}}`, 'estimated {{edge}}'],
          [`cascade_edge_accuracy_budget{${EDGE}}`, 'budget {{edge}}'],
        ],
      ],
      ['Constraint holding the controller', 'short', [[`cascade_edge_controller_binding{${EDGE}} == 1`, '{{edge}}: {{constraint}}']]], // prettier-ignore
      ['Thresholds in force', 'percentunit', [[`cascade_edge_threshold{${EDGE}}`, 'exit {{exit}} {{edge}}']]],
      [
        'Agreement with the last exit, by the exit frames leave at',
        'percentunit',
        [[`cascade_edge_exit_agreement_ratio{${EDGE}}`, 'exit {{exit}} {{edge}}']],
      ],
      [
        'Offload rate and the cap pressure and bandwidth allow',
        'percentunit',
        [
          [offloadRate(' by (edge) ', EDGE), 'offloaded {{edge}}'],
          [`cascade_edge_offload_cap{${EDGE}}`, 'cap {{edge}}'],
        ],
      ],
      [
        'Offload bytes per second',
        'Bps',
        [[`sum by (edge) (rate(cascade_offload_bytes_sum{${EDGE}}[${R}]))`, '{{edge}}']],
      ],
      [
        'Shadow samples by result, and records in the estimate',
        'short',
        [
          [`sum by (result) (rate(cascade_edge_shadow_requests_total{${EDGE}}[${R}]))`, '{{result}} /s'],
          [`cascade_edge_shadow_records{${EDGE}}`, 'records {{edge}}'],
        ],
      ],
      [
        'Shadow requests at the workers, and fleet configuration changes taken',
        'short',
        [
          [`sum by (status) (rate(cascade_worker_shadow_requests_total[${R}]))`, 'worker {{status}} /s'],
          [`sum by (edge, result) (increase(cascade_edge_config_updates_total{${EDGE}}[${R}]))`, 'config {{result}} {{edge}}'], // prettier-ignore
        ],
      ],
    ],
  },
  'cascade-workers': {
    title: 'Cascade / Cloud workers',
    vars: [['worker', 'cascade_worker_requests_total']],
    panels: [
      [
        'Requests per second by status',
        'reqps',
        [[`sum by (status) (rate(cascade_worker_requests_total{${WORKER}}[${R}]))`, '{{status}}']],
      ],
      [
        'Error ratio',
        'percentunit',
        [
          [
            `(sum(rate(cascade_worker_requests_total{status!="ok",${WORKER}}[${R}])) or vector(0)) / sum(rate(cascade_worker_requests_total{${WORKER}}[${R}]))`,
            'errors',
          ],
        ],
      ],
      [
        'Request duration',
        's',
        [
          [quantile(0.5, 'cascade_worker_request_seconds', '', WORKER), 'p50'],
          [quantile(0.99, 'cascade_worker_request_seconds', '', WORKER), 'p99'],
        ],
      ],
      ['Queue wait p99', 's', [[quantile(0.99, 'cascade_worker_queue_seconds', '', WORKER), 'p99']]],
      [
        'Compute per batch p99 by stage',
        's',
        [[quantile(0.99, 'cascade_worker_compute_seconds', 'stage', WORKER), 'stage {{stage}}']],
      ],
      ['Mean batch size', 'short', [[mean('cascade_worker_batch_size', 'worker', WORKER), '{{worker}}']]],
      ['Queue depth', 'short', [[`sum by (worker) (cascade_worker_queue_depth{${WORKER}})`, '{{worker}}']]],
      [
        'Inference thread utilisation',
        'percentunit',
        [[`sum by (worker) (rate(cascade_worker_compute_seconds_sum{${WORKER}}[${R}]))`, '{{worker}}']],
      ],
      ['Workers up', 'short', [['count(up{job="cascade-workers"} == 1)', 'up']], 'stat'],
    ],
  },
  'cascade-nats': {
    title: 'Cascade / NATS (client side)',
    panels: [
      [
        'Messages per second by direction',
        'ops',
        [[`sum by (direction) (rate(cascade_nats_messages_total[${R}]))`, '{{direction}}']],
      ],
      [
        'Bytes per second by direction',
        'Bps',
        [[`sum by (direction) (rate(cascade_nats_bytes_total[${R}]))`, '{{direction}}']],
      ],
      ['Connected clients', 'short', [['sum(cascade_nats_connected)', 'connected']], 'stat'],
      [
        'Messages per second per worker',
        'ops',
        [[`sum by (worker) (rate(cascade_nats_messages_total[${R}]))`, '{{worker}}']],
      ],
    ],
  },
};

function panel([title, unit, targets, type = 'timeseries'], i) {
  return {
    id: i + 1,
    type,
    title,
    datasource: { type: 'prometheus', uid: 'prometheus' },
    gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
    fieldConfig: { defaults: { unit }, overrides: [] },
    options: {},
    targets: targets.map(([expr, legendFormat], j) => ({
      refId: String.fromCharCode(65 + j),
      datasource: { type: 'prometheus', uid: 'prometheus' },
      expr,
      legendFormat,
    })),
  };
}

function variable([name, metric]) {
  return {
    name,
    type: 'query',
    datasource: { type: 'prometheus', uid: 'prometheus' },
    query: { query: `label_values(${metric}, ${name})`, refId: name },
    refresh: 2,
    includeAll: true,
    multi: true,
    allValue: '.*',
    current: { text: 'All', value: '$__all' },
  };
}

const out = join(dirname(fileURLToPath(import.meta.url)), 'dashboards');
for (const [uid, d] of Object.entries(dashboards)) {
  const json = {
    uid,
    title: d.title,
    tags: ['cascade'],
    schemaVersion: 39,
    version: 1,
    editable: false,
    time: { from: 'now-1h', to: 'now' },
    refresh: '10s',
    templating: { list: (d.vars ?? []).map(variable) },
    panels: d.panels.map(panel),
  };
  writeFileSync(join(out, `${uid}.json`), `${JSON.stringify(json, null, 2)}\n`);
}
