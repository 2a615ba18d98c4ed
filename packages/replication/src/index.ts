export {
  type ConnectPeer, type JoinSql, type Link, type Membership, type PeerConnection, type Queryable, REPLICATION_SETS, type ReplicationDriver,
  type ReplicationKind, type ReplicationSql, type Sql, type SubscriberLag, type SubscriptionSpec, type SubscriptionStatus, subscriptionName, type UnreplicatedDdl
} from './driver.js'
export { pglogicalJoinSql } from './join.js'
export { dropStaleSlots, waitConfirmed } from './membership.js'
export { pglogicalSql } from './pglogical.js'
export { type ApplyError, applyErrors, type JsonLogEntry, JsonLogTail, type LogPosition, nextRead, parseJsonLog, serverLogSql, splitLines } from './server-log.js'
export { BARRIER_MESSAGE, CURRENT_WAL_LSN, dropInactiveSlots, dropSlot, pglogicalSlots, slotConfirmed, terminateSlotUsers } from './slots.js'
export { spockRepairMode, spockSql } from './spock.js'
export { detect, driverFor, pglogicalDriver, spockDriver } from './sql-driver.js'
