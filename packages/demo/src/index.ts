/** @cascade/demo: the whole cascade on one machine, and the process helpers its tests share. */
export { runDemo, type DemoOptions, type DemoReport } from './demo.js';
export {
  ensureNatsServer,
  NatsServerMissingError,
  startNatsServer,
  type LocalNats,
  type NatsServerOptions,
} from './nats-server.js';
export { cloudCli, killTracked, startWorker, stopChild, track, type WorkerProcess } from './processes.js';
