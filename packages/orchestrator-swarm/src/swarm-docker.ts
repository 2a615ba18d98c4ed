import type Docker from 'dockerode'
import type { Logger } from 'pino'
import { cloneContainerName, LABELS, networkName, serviceName } from './task-spec.js'

/** A host component as GET /v1/hosts shows it (`{healthy, error?, details?}`). */
export interface DockerComponent { healthy: boolean, error?: string, details?: Record<string, unknown> }

export interface SwarmRole { nodeId: string, manager: boolean }

export function isNotFound (err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404
}

export function delay (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** This dockerd's swarm node, and whether it may manage services. */
export async function swarmRole (docker: Docker): Promise<SwarmRole> {
  const info = await docker.info() as { Swarm?: { NodeID?: string, LocalNodeState?: string, ControlAvailable?: boolean } }
  const swarm = info.Swarm
  if (swarm?.LocalNodeState !== 'active' || swarm.NodeID === undefined || swarm.NodeID === '') {
    throw new Error(`docker on this host is not an active swarm node (state: ${swarm?.LocalNodeState ?? 'unknown'}); run docker swarm init or join`)
  }
  return { nodeId: swarm.NodeID, manager: swarm.ControlAvailable === true }
}

/** The anchor's `docker` host component: container counts and the Swarm node's state. */
export async function dockerComponent (docker: Docker): Promise<DockerComponent> {
  try {
    const info = await docker.info() as {
      Containers?: number, ContainersRunning?: number, ContainersStopped?: number, ContainersPaused?: number,
      Swarm?: { LocalNodeState?: string, ControlAvailable?: boolean, Error?: string }
    }
    const state = info.Swarm?.LocalNodeState ?? 'unknown'
    const swarmError = info.Swarm?.Error ?? ''
    return {
      healthy: state === 'active',
      ...(state === 'active' ? {} : { error: `this host is not an active swarm node (state: ${state})` }),
      details: {
        containers: info.Containers ?? 0,
        containers_running: info.ContainersRunning ?? 0,
        containers_stopped: info.ContainersStopped ?? 0,
        containers_paused: info.ContainersPaused ?? 0,
        swarm: { local_node_state: state, control_available: info.Swarm?.ControlAvailable === true, ...(swarmError === '' ? {} : { error: swarmError }) }
      }
    }
  } catch (err) {
    return { healthy: false, error: `docker is not reachable: ${(err as Error).message}` }
  }
}

/**
 * The database's attachable overlay, created by the first manager host that needs it. Swarm does not enforce
 * unique network names, so concurrent creations can make two: everyone uses the oldest, and extras are removed.
 */
export async function ensureNetwork (docker: Docker, databaseId: string, role: SwarmRole): Promise<string> {
  const name = networkName(databaseId)
  // A worker sees a swarm network only once something of its own is attached; the Engine resolves the name then.
  if (!role.manager) return name
  const find = async (): Promise<Docker.NetworkInspectInfo[]> => (await docker.listNetworks({ filters: { name: [name] } }))
    .filter(n => n.Name === name && n.Scope === 'swarm')
    .sort((a, b) => a.Created.localeCompare(b.Created) || a.Id.localeCompare(b.Id))
  let networks = await find()
  if (networks.length === 0) {
    await docker.createNetwork({
      Name: name, Driver: 'overlay', Attachable: true, CheckDuplicate: true,
      Labels: { [LABELS.databaseId]: databaseId, [LABELS.component]: 'network' }
    }).catch((err: unknown) => { if ((err as { statusCode?: number }).statusCode !== 409) throw err })
    networks = await find()
  }
  const [chosen, ...extras] = networks
  if (chosen === undefined) throw new Error(`network ${name} could not be created`)
  for (const extra of extras) await docker.getNetwork(extra.Id).remove().catch(() => undefined)
  return chosen.Id
}

/** Once no service of the database is left, its network goes (the last host to remove an instance does it). */
export async function removeNetworkIfUnused (docker: Docker, databaseId: string, log: Logger): Promise<void> {
  const role = await swarmRole(docker).catch(() => undefined)
  if (role?.manager !== true) return
  const services = await docker.listServices({ filters: { label: [`${LABELS.databaseId}=${databaseId}`] } })
  if (services.length > 0) return
  const name = networkName(databaseId)
  for (const network of (await docker.listNetworks({ filters: { name: [name] } })).filter(n => n.Name === name)) {
    // Tasks of just-removed services (or workers' containers) may still hold endpoints for a moment.
    for (let attempt = 0; ; attempt++) {
      try {
        await docker.getNetwork(network.Id).remove()
        break
      } catch (err) {
        if (isNotFound(err)) break
        if (attempt >= 20) {
          log.warn({ network: name, err: (err as Error).message }, 'could not remove the database network')
          break
        }
        await delay(500)
      }
    }
  }
}

export async function removeCloneContainer (docker: Docker, instanceId: string): Promise<void> {
  await docker.getContainer(cloneContainerName(instanceId)).remove({ force: true })
    .catch((err: unknown) => { if (!isNotFound(err)) throw err })
}

/** This instance's containers on this host (service tasks and workers' containers alike), newest first. */
export async function instanceContainers (docker: Docker, instanceId: string): Promise<Docker.ContainerInfo[]> {
  const found = await docker.listContainers({ all: true, filters: { label: [`${LABELS.instanceId}=${instanceId}`] } })
  return found.sort((a, b) => b.Created - a.Created)
}

/** Why the service has no running task, as Swarm says it (manager hosts only; best effort). */
export async function taskProblem (docker: Docker, instanceId: string): Promise<string | undefined> {
  try {
    const tasks = await docker.listTasks({ filters: { service: [serviceName(instanceId)] } }) as Array<{ Status?: { State?: string, Err?: string, Message?: string }, CreatedAt?: string }>
    const latest = tasks.sort((a, b) => (b.CreatedAt ?? '').localeCompare(a.CreatedAt ?? ''))[0]
    if (latest?.Status === undefined) return undefined
    return `task ${latest.Status.State ?? '?'}${latest.Status.Err === undefined ? '' : `: ${latest.Status.Err}`}`
  } catch {
    return undefined
  }
}

export async function waitGone (docker: Docker, instanceId: string): Promise<void> {
  for (let i = 0; i < 240; i++) {
    if ((await instanceContainers(docker, instanceId)).every(c => c.State !== 'running' && c.State !== 'restarting')) return
    await delay(250)
  }
  throw new Error(`the containers of ${instanceId} did not stop`)
}

