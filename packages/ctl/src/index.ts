/** @cascade/ctl: the operator command's functions. */
export { getSettings, keyOf, listFleet, parseAssignments, removeSettings, setSettings } from './fleet.js';
export { formatFleet, formatModels } from './format.js';
export { parseModelRef } from './models.js';
export {
  addDevice,
  AuthDir,
  DEVICE_ID,
  devicePermissions,
  DEVICES_BUCKET,
  listDevices,
  revokeDevice,
  ROLE_PERMISSIONS,
  SITE_ID,
  sitePermissions,
  type DeviceEntry,
} from './devices.js';
