export { Host, type HostConfig, type HostObserved, type HostView, type ComponentStatus, type JoinOptions } from './host.js'
export { HostMetrics } from './metrics.js'
export { VERSION, REVISION, REVISION_TIME } from './version.js'
