import { describe, expect, it } from 'vitest'
import { CLONE_SCRIPT, cloneContainerSpec, containerSpec, describeConfigContainerSpec, networkName, serviceName, serviceSpec, specHash, START_SCRIPT, type TaskInput } from './task-spec.js'

const input: TaskInput = {
  instanceId: 'app-n1-689qacsi',
  databaseId: 'app',
  nodeName: 'n1',
  hostId: 'host-1',
  image: 'pgmesh/postgres:15',
  postgresMajor: 15,
  port: 6432,
  hostAddresses: ['10.0.0.1', 'fd00::1'],
  dirs: { data: '/d/instances/app-n1-689qacsi/data', configs: '/d/instances/app-n1-689qacsi/configs', socket: '/d/instances/app-n1-689qacsi/run' },
  network: 'net-id',
  extraLabels: { tier: 'gold', 'pgedge.host.id': 'spoofed' }
}

describe('service spec', () => {
  const spec = serviceSpec(input, 'node-1', 1, 3)
  const container = spec.TaskTemplate as { ContainerSpec: Record<string, any>, Placement: unknown, Networks: unknown, ForceUpdate: number }

  it('is one replica named postgres-<instance id>, pinned to this host\'s swarm node, replaced stop-first', () => {
    expect(spec.Name).toBe('postgres-app-n1-689qacsi')
    expect(serviceName(input.instanceId)).toBe(spec.Name)
    expect(spec.Mode).toEqual({ Replicated: { Replicas: 1 } })
    expect(container.Placement).toEqual({ Constraints: ['node.id==node-1'] })
    expect(spec.UpdateConfig?.Order).toBe('stop-first')
    expect(container.ForceUpdate).toBe(3)
  })

  it('publishes the port in host mode on a dnsrr endpoint, and listens on the same port inside', () => {
    expect(spec.EndpointSpec).toEqual({
      Mode: 'dnsrr', Ports: [{ Name: 'postgres', Protocol: 'tcp', TargetPort: 6432, PublishedPort: 6432, PublishMode: 'host' }]
    })
    expect(container.Networks).toEqual([{ Target: 'net-id', Aliases: ['postgres-app-n1-689qacsi'] }])
  })

  it("carries the anchor's labels, which extra labels cannot override, on the service and its containers", () => {
    const expected = {
      tier: 'gold', 'pgedge.host.id': 'host-1', 'pgedge.database.id': 'app', 'pgedge.instance.id': 'app-n1-689qacsi',
      'pgedge.node.name': 'n1', 'pgedge.component': 'postgres', 'pgmesh.spec-hash': specHash(input)
    }
    expect(spec.Labels).toEqual(expected)
    expect(container.ContainerSpec.Labels).toEqual(expected)
  })

  it('runs the start script as root with the host addresses for the loopback, a health check and a fast-shutdown stop signal', () => {
    const c = container.ContainerSpec
    expect(c.Command).toEqual(['/bin/sh', '-c', START_SCRIPT])
    expect(c.User).toBe('root')
    expect(c.Env).toEqual(['PGMESH_MAJOR=15', 'PGMESH_LOCAL_ADDRESSES=10.0.0.1/32 fd00::1/128', 'PGPASSFILE=/var/lib/pgmesh/data/pgpass'])
    expect(c.StopSignal).toBe('SIGINT')
    expect(c.Healthcheck.Test).toEqual(['CMD-SHELL', 'PATH="/usr/lib/postgresql/15/bin:$PATH" pg_isready -q -h /var/run/postgresql -p 6432'])
    expect(c.HealthCheck).toBeUndefined()
    expect(c.CapabilityAdd).toEqual(['CAP_NET_ADMIN'])
    expect(c.Mounts).toEqual([
      { Type: 'bind', Source: input.dirs.data, Target: '/var/lib/pgmesh/data' },
      { Type: 'bind', Source: input.dirs.configs, Target: '/etc/pgmesh', ReadOnly: true },
      { Type: 'bind', Source: input.dirs.socket, Target: '/var/run/postgresql' }
    ])
  })
})

describe('worker container spec', () => {
  it('is the same instance as a plain container that Docker restarts, on the database network', () => {
    const spec = containerSpec(input)
    expect(spec.name).toBe('postgres-app-n1-689qacsi')
    expect(spec.Entrypoint).toEqual(['/bin/sh', '-c'])
    expect(spec.Cmd).toEqual([START_SCRIPT])
    expect(spec.HostConfig?.RestartPolicy).toEqual({ Name: 'unless-stopped' })
    expect(spec.HostConfig?.PortBindings).toEqual({ '6432/tcp': [{ HostPort: '6432' }] })
    expect(spec.HostConfig?.NetworkMode).toBe('net-id')
    expect(spec.Labels?.['pgedge.host.id']).toBe('host-1')
  })
})

describe('replica clone container', () => {
  const spec = cloneContainerSpec({
    instanceId: 'app-n1-host2', databaseId: 'app', hostId: 'host-2', image: 'pgmesh/postgres:15', postgresMajor: 15,
    dataDir: '/d/instances/app-n1-host2/data', basebackupArgs: ['-h', '10.0.0.1', '-D', '/var/lib/pgmesh/data/pgdata']
  })

  it('runs pg_basebackup with the given arguments on the host network, into the bind-mounted data dir only', () => {
    expect(spec.name).toBe('pgmesh-clone-app-n1-host2')
    expect(spec.Entrypoint).toEqual(['/bin/sh', '-c'])
    expect(spec.Cmd).toEqual([CLONE_SCRIPT, 'pgmesh-clone', '-h', '10.0.0.1', '-D', '/var/lib/pgmesh/data/pgdata'])
    expect(CLONE_SCRIPT).toContain('pg_basebackup "$@"')
    expect(CLONE_SCRIPT).toContain('touch /var/lib/pgmesh/data/pgdata/standby.signal')
    expect(spec.HostConfig?.NetworkMode).toBe('host')
    expect(spec.HostConfig?.Mounts).toEqual([{ Type: 'bind', Source: '/d/instances/app-n1-host2/data', Target: '/var/lib/pgmesh/data' }])
    expect(spec.HostConfig?.RestartPolicy).toBeUndefined()
    expect(spec.Env).toEqual(['PGMESH_MAJOR=15', 'PGCONNECT_TIMEOUT=10', 'PGPASSFILE=/var/lib/pgmesh/data/pgpass'])
  })

  it('is not labelled as an instance container, so status and events never take it for the instance', () => {
    expect(spec.Labels).toEqual({ 'pgedge.host.id': 'host-2', 'pgedge.database.id': 'app', 'pgmesh.clone-of': 'app-n1-host2', 'pgedge.component': 'clone' })
    expect(spec.Labels?.['pgedge.instance.id']).toBeUndefined()
  })

  it('prepares the mounts as the start script does, but never runs initdb', () => {
    expect(CLONE_SCRIPT.split('\n').slice(0, 6)).toEqual(START_SCRIPT.split('\n').slice(0, 6))
    expect(CLONE_SCRIPT).not.toContain('initdb')
  })
})

describe('describe-config container', () => {
  const spec = describeConfigContainerSpec({ hostId: 'host-1', image: 'pgmesh/postgres:15', imageId: 'sha256:0123456789abcdef0123', postgresMajor: 15 })

  it("runs the image's own postgres --describe-config of the instance's major, without network, mounts or TTY", () => {
    expect(spec.name).toBe('pgmesh-describe-config-0123456789ab-15')
    expect(spec.Image).toBe('pgmesh/postgres:15')
    expect(spec.Entrypoint).toEqual(['/bin/sh', '-c'])
    expect(spec.Cmd).toEqual(['PATH="/usr/lib/postgresql/$PGMESH_MAJOR/bin:$PATH" exec postgres --describe-config'])
    expect(spec.Env).toEqual(['PGMESH_MAJOR=15'])
    expect(spec.Tty).toBe(false)
    expect(spec.HostConfig).toEqual({ NetworkMode: 'none' })
  })

  it('is not labelled as an instance container', () => {
    expect(spec.Labels).toEqual({ 'pgedge.host.id': 'host-1', 'pgmesh.describe-config-of': 'sha256:0123456789abcdef0123', 'pgedge.component': 'describe-config' })
  })
})

describe('spec hash and names', () => {
  it('changes with anything the task is made of and only then', () => {
    expect(specHash({ ...input })).toBe(specHash(input))
    expect(specHash({ ...input, port: 6433 })).not.toBe(specHash(input))
    expect(specHash({ ...input, image: 'other:1' })).not.toBe(specHash(input))
    expect(specHash({ ...input, extraLabels: {} })).not.toBe(specHash(input))
  })

  it("names the database network as the anchor does", () => {
    expect(networkName('app')).toBe('app-database')
  })
})
