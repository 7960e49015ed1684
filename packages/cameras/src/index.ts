/** @cascade/cameras: cameras for the edge agent (sources that heal, frames cut in ffmpeg, figures per camera). */
export { Backoff } from './backoff.js';
export { Camera, SourceError, toPlanar, withPassword, type CameraFigures, type CameraFrame, type CameraOptions, type CameraState } from './camera.js'; // prettier-ignore
export { ffmpegArgs, filterGraph, fitFilters, frameBytes, isLive } from './filters.js';
export { CameraMetrics } from './metrics.js';
export { FrameQueue } from './queue.js';
export {
  CAMERA_NAME,
  checkFit,
  checkFps,
  DEFAULT_CAMERA_FPS,
  FITS,
  formatCamera,
  formatRegion,
  parseCamera,
  parseCameraFlag,
  parseRegion,
  sameCamera,
  type CameraSpec,
  type Fit,
  type Region,
} from './spec.js';
