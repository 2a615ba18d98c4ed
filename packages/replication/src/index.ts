export {
  type Link, type Queryable, REPLICATION_SETS, type ReplicationDriver, type ReplicationKind,
  type ReplicationSql, type Sql, type SubscriptionSpec, type SubscriptionStatus, subscriptionName, type UnreplicatedDdl
} from './driver.js'
export { pglogicalSql } from './pglogical.js'
export { type ApplyError, applyErrors, type JsonLogEntry, JsonLogTail, type LogPosition, nextRead, parseJsonLog, serverLogSql, splitLines } from './server-log.js'
export { dropInactiveSlots, terminateSlotUsers } from './slots.js'
export { spockRepairMode, spockSql } from './spock.js'
export { detect, driverFor, pglogicalDriver, spockDriver } from './sql-driver.js'
