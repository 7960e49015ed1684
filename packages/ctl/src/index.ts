/** @cascade/ctl: the operator command's functions. */
export { getSettings, keyOf, listFleet, parseAssignments, removeSettings, setSettings } from './fleet.js';
export { formatFleet } from './format.js';
