/** What removing a host does to one database's spec (`specWithoutHost`). */
export interface HostRemovalEdit {
  /** The spec without the host; undefined when no node is left (the database goes with its last host). */
  spec: Record<string, unknown> | undefined
  /** Nodes whose only host it was: removed from the database. */
  removedNodes: string[]
  /** Nodes that keep running on their other hosts (a replica, or a primary that has failed over, dropped). */
  shrunkNodes: string[]
  /**
   * Nodes that keep other hosts but whose primary does not serve on one of them yet (it is on the host, or a replica
   * is still being promoted): the edit waits until it does. Written earlier, it would leave a node of one host (no
   * lease any more) with a replica that nothing promotes.
   */
  awaitingFailover: string[]
}

interface NodeLike { name?: unknown, host_ids?: unknown, source_node?: unknown }

/**
 * A database's spec without `hostId`: a node whose only host it was is removed (and no node names it as its
 * source any more), a node with other hosts drops it from `host_ids`, and so do services. `primaryHostOf` says which
 * host serves a node's primary now (the highest recorded term's instance, once it reports itself primary), or
 * undefined when none does. Pure: the caller writes the result as an
 * update. Undefined when the spec does not name the host at all.
 */
export function specWithoutHost (
  spec: Readonly<Record<string, unknown>>, hostId: string, primaryHostOf: (nodeName: string, hostIds: readonly string[]) => string | undefined
): HostRemovalEdit | undefined {
  const nodes = Array.isArray(spec.nodes) ? spec.nodes as NodeLike[] : []
  const services = Array.isArray(spec.services) ? spec.services as Array<{ host_ids?: unknown }> : []
  const names = (v: unknown): string[] => Array.isArray(v) ? v.filter((h): h is string => typeof h === 'string') : []
  const named = [...nodes, ...services].some(n => names(n.host_ids).includes(hostId))
  if (!named) return undefined
  const edit: HostRemovalEdit = { spec: undefined, removedNodes: [], shrunkNodes: [], awaitingFailover: [] }
  const kept: NodeLike[] = []
  for (const node of nodes) {
    const hostIds = names(node.host_ids)
    const name = typeof node.name === 'string' ? node.name : ''
    if (!hostIds.includes(hostId)) {
      kept.push(node)
      continue
    }
    const others = hostIds.filter(h => h !== hostId)
    if (others.length === 0) {
      edit.removedNodes.push(name)
      continue
    }
    const serving = primaryHostOf(name, hostIds)
    if (serving === undefined || !others.includes(serving)) edit.awaitingFailover.push(name)
    edit.shrunkNodes.push(name)
    kept.push({ ...node, host_ids: others })
  }
  if (kept.length === 0) return edit
  const removed = new Set(edit.removedNodes)
  const nodesOut = kept.map(n => {
    if (typeof n.source_node !== 'string' || !removed.has(n.source_node)) return n
    // The node it would copy from is gone: it copies from the first remaining node, as with no source given.
    const { source_node: _gone, ...rest } = n
    return rest
  })
  const servicesOut = services
    .map(s => names(s.host_ids).includes(hostId) ? { ...s, host_ids: names(s.host_ids).filter(h => h !== hostId) } : s)
    .filter(s => names(s.host_ids).length > 0)
  edit.spec = { ...spec, nodes: nodesOut, ...(spec.services === undefined ? {} : { services: servicesOut }) }
  return edit
}
