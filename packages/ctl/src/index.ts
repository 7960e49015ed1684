/** @cascade/ctl: the operator command's functions. */
export { getSettings, keyOf, listFleet, parseAssignments, removeSettings, setSettings } from './fleet.js';
export { formatFleet, formatModels } from './format.js';
export { parseModelRef } from './models.js';
