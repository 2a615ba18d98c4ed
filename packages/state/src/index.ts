export { ClusterState, type ChangeEvent, type ClusterStateOptions, type Doc } from './cluster-state.js'
export { DocReplicator, SYNC_PROTOCOL, CHANGES_TOPIC, type ReplicatorOptions, type ReplicatorStats } from './replicator.js'
export { DocLog, encodeRecord, parseRecords } from './doc-log.js'
export { type ChangeMeta, type ClusterDoc, type ClusterRecord, type HostRecord, decodeChangeMeta } from './doc.js'
