import { InvalidInputError, NODE_NAME_PATTERN } from '@pgmesh/model'

/** What an orchestrator accepts as an instance id: it is also a directory name and part of a service name. */
const INSTANCE_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/
const HOST_HASH = /^[0-9a-z]+$/

export function isInstanceId (instanceId: string): boolean {
  return INSTANCE_ID.test(instanceId)
}

export function assertInstanceId (instanceId: string): void {
  if (!isInstanceId(instanceId)) {
    throw new InvalidInputError(`invalid instance id '${instanceId}': use 1-63 lowercase letters, digits, '-' or '_'`)
  }
}

/** The parts of an id made by the model's `instanceId(databaseId, nodeName, hostId)`. */
export interface InstanceIdParts { databaseId: string, nodeName: string, hostHash: string }

/**
 * `<database id>-<node name>-<host hash>` taken apart: the database id may itself contain `-`, the node name (`n1`)
 * and the host hash cannot, so they are the last two segments. undefined for an id of any other shape.
 */
export function parseInstanceId (instanceId: string): InstanceIdParts | undefined {
  const hashAt = instanceId.lastIndexOf('-')
  const nodeAt = hashAt <= 0 ? -1 : instanceId.lastIndexOf('-', hashAt - 1)
  if (nodeAt <= 0) return undefined
  const parts = { databaseId: instanceId.slice(0, nodeAt), nodeName: instanceId.slice(nodeAt + 1, hashAt), hostHash: instanceId.slice(hashAt + 1) }
  return NODE_NAME_PATTERN.test(parts.nodeName) && HOST_HASH.test(parts.hostHash) ? parts : undefined
}
