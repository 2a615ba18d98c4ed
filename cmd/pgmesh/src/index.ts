export { runDaemon, type Daemon, REDACT } from './daemon.js'
export { resolveConfig, loadConfigFile, type DaemonConfig, type FileConfig } from './config.js'
export { renderOpenApi } from './openapi.js'
