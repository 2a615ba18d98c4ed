import type { DatabaseSpec, HostRecord } from '@pgmesh/model'

type NodeSpec = DatabaseSpec['nodes'][number]
interface FileRepository { type: string, base_path?: string | undefined }
export interface Issue { path: string, message: string }

/**
 * On a Swarm host pgBackRest runs inside the node's containers: a posix or cifs repository (to back up into or to
 * restore from) must be on a host path they mount (orchestrator_opts.swarm.extra_volumes), or it would be written
 * inside a container and lost with it, or not be found. Undefined when the node has no Swarm host or the path is
 * mounted.
 */
export function unmountedRepositoryIssue (
  hosts: Readonly<Record<string, HostRecord | undefined>>, spec: DatabaseSpec, node: NodeSpec, repo: FileRepository, path: string
): Issue | undefined {
  if (repo.type !== 'posix' && repo.type !== 'cifs') return undefined
  if (!node.host_ids.some(h => hosts[h]?.orchestrator === 'swarm')) return undefined
  const mounted = ((node.orchestrator_opts ?? spec.orchestrator_opts)?.swarm?.extra_volumes ?? []).map(v => v.destination_path.replace(/\/+$/, ''))
  const base = (repo.base_path ?? '').replace(/\/+$/, '')
  if (mounted.some(m => base === m || base.startsWith(`${m}/`))) return undefined
  return {
    path,
    message: `node ${node.name} runs on Swarm: the ${repo.type} repository must be on a host path mounted into its containers ` +
      `(orchestrator_opts.swarm.extra_volumes with a destination_path containing ${repo.base_path ?? '/'}), or pgBackRest inside them cannot keep or find it`
  }
}
