import type { EdgeHeartbeat } from '@cascade/proto';
import type { RegistryEntry } from '@cascade/service';

const pct = (v: number | null, digits = 1) =>
  v === null || !Number.isFinite(v) ? '-' : `${(v * 100).toFixed(digits)} %`;

/** The fleet as a table: one row per edge, `now` for the age of each heartbeat. */
export function formatFleet(edges: EdgeHeartbeat[], now = Date.now()): string {
  if (edges.length === 0) return 'no edges in the registry (none has sent a heartbeat in the last 30 s)\n';
  const head = [
    'edge',
    'model',
    'operating point',
    'offload',
    'agreement',
    'est. loss',
    'controller',
    'frames',
    'seen',
    'config',
  ];
  const rows = edges.map((e) => [
    e.id,
    `${e.model}@${e.model_version.slice(0, 8)}`,
    e.operating_point,
    pct(e.offload_rate),
    pct(e.agreement),
    pct(e.estimated_loss, 2),
    e.controller ? `on (${e.binding})` : 'off',
    String(e.frames),
    `${Math.max(0, Math.round((now - e.sent_unix_ms) / 1000))} s ago`,
    [
      e.config_error ? `rev ${e.config_revision}, refused: ${e.config_error}` : `rev ${e.config_revision}`,
      ...(e.model_error ? [`model refused: ${e.model_error}`] : []),
    ].join('; '),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(head), ...rows.map(line)].join('\n')}\n`;
}

/** The registry as a table: one row per model version. */
export function formatModels(models: RegistryEntry[]): string {
  if (models.length === 0) return 'no models in the registry (cascade model push DIR adds one)\n';
  const rows = models.map((m) => [m.name, m.version, String(m.files), `${(m.bytes / 1e6).toFixed(1)} MB`, m.pushed]);
  const head = ['model', 'version', 'files', 'size', 'pushed'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return `${[head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
