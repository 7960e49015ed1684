// Figures per camera, labelled by the camera's id (`edge`, as the edge agent's own metrics are, so the two join).
import { Counter, Gauge, type Registry } from 'prom-client';

export class CameraMetrics {
  readonly up: Gauge<'edge'>;
  readonly decoded: Counter<'edge'>;
  readonly taken: Counter<'edge'>;
  readonly dropped: Counter<'edge'>;
  readonly missed: Counter<'edge'>;
  readonly reconnects: Counter<'edge'>;
  readonly decodeErrors: Counter<'edge'>;
  readonly lastFrameAge: Gauge<'edge'>;
  /** Seconds since each camera's last frame, read at scrape time. */
  private readonly ages = new Map<string, () => number>();

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ['edge'] as const;
    this.up = new Gauge({ name: 'cascade_camera_up', help: '1 while the camera sends frames, 0 while it is down or being reopened', labelNames, registers }); // prettier-ignore
    this.decoded = new Counter({ name: 'cascade_camera_frames_decoded_total', help: 'frames decoded from the camera', labelNames, registers }); // prettier-ignore
    this.taken = new Counter({ name: 'cascade_camera_frames_taken_total', help: 'frames taken at the camera\'s rate (--fps), each classified once per region', labelNames, registers }); // prettier-ignore
    this.dropped = new Counter({ name: 'cascade_camera_frames_dropped_total', help: 'taken frames dropped because the agent was behind (the oldest in the camera\'s queue)', labelNames, registers }); // prettier-ignore
    this.missed = new Counter({ name: 'cascade_camera_frames_missed_total', help: 'frames the camera would have given at its rate while it was down (counted, never invented)', labelNames, registers }); // prettier-ignore
    this.reconnects = new Counter({ name: 'cascade_camera_reconnects_total', help: 'times the camera was reopened after it dropped, stalled or failed to open', labelNames, registers }); // prettier-ignore
    this.decodeErrors = new Counter({ name: 'cascade_camera_decode_errors_total', help: 'errors ffmpeg reported while decoding the camera\'s stream', labelNames, registers }); // prettier-ignore
    const ages = this.ages;
    this.lastFrameAge = new Gauge({
      name: 'cascade_camera_last_frame_age_seconds',
      help: "seconds since the camera's last decoded frame",
      labelNames,
      registers,
      collect() {
        for (const [edge, age] of ages) this.set({ edge }, age());
      },
    });
  }

  /** Starts the series of a camera at 0, so that rates exist from its first scrape. */
  add(edge: string, age: () => number): void {
    for (const c of [this.decoded, this.taken, this.dropped, this.missed, this.reconnects, this.decodeErrors]) c.inc({ edge }, 0); // prettier-ignore
    this.up.set({ edge }, 0);
    this.ages.set(edge, age);
  }

  /** Removes a camera's series (it was removed from the agent). */
  remove(edge: string): void {
    this.ages.delete(edge);
    for (const m of [this.up, this.decoded, this.taken, this.dropped, this.missed, this.reconnects, this.decodeErrors, this.lastFrameAge]) m.remove({ edge }); // prettier-ignore
  }
}
