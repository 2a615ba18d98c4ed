import { createHash } from 'node:crypto'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { InstanceSpec } from '@pgmesh/model'
import {
  archiveCommand, changedSettings, type ConfigChange, desiredSettings, type InstanceRecord, renderHba, renderIdent, renderManagedConf,
  type ReplicationLibrary
} from '@pgmesh/orchestrator'
import { CONTAINER_PATHS } from './task-spec.js'

/** What the config files depend on and what the running server has applied (appliedAuth: a hash of the auth files). */
export type ConfigState = Pick<InstanceRecord, 'port' | 'standbyOf' | 'appliedSettings'> & { appliedAuth?: string }

/** A config change, with what to record as applied once the server has it. */
export interface SwarmConfigChange extends ConfigChange { applied: { settings: Record<string, string>, auth: string } }

/**
 * postgresql.conf (the process orchestrator's settings, with container paths), pg_hba.conf and pg_ident.conf,
 * all outside pgdata in the read-only configs mount, so they exist before initdb and travel with nothing else.
 */
export async function writeConfigFiles (
  configsDir: string, spec: InstanceSpec, state: ConfigState, library: ReplicationLibrary, serverParameters: ReadonlySet<string>
): Promise<SwarmConfigChange> {
  const settings = desiredSettings({
    spec: { instanceId: spec.instanceId, listenAddresses: ['*'], ...(spec.postgresqlConf === undefined ? {} : { postgresqlConf: spec.postgresqlConf }) },
    port: state.port, socketDir: CONTAINER_PATHS.socket, logDir: CONTAINER_PATHS.log, library, serverParameters,
    ...(spec.backup === undefined ? {} : { archiveCommand: archiveCommand('/usr/bin/pgbackrest', CONTAINER_PATHS.pgbackrestConf) }),
    ...(state.standbyOf === undefined ? {} : { standbyOf: state.standbyOf })
  })
  await writeServerConf(configsDir, settings)
  const hba = renderHba(spec)
  const ident = renderIdent(spec)
  await writeConfigFile(join(configsDir, 'pg_hba.conf'), hba)
  await writeConfigFile(join(configsDir, 'pg_ident.conf'), ident)
  const authHash = createHash('sha256').update(hba).update('\0').update(ident).digest('hex').slice(0, 16)
  const changed = changedSettings(state.appliedSettings, settings)
  return { settings: changed, auth: state.appliedAuth !== authHash, applied: { settings: Object.fromEntries(settings), auth: authHash } }
}

/** The server's postgresql.conf: these settings, and the auth files beside it. */
export async function writeServerConf (configsDir: string, settings: Map<string, string>): Promise<void> {
  const conf = renderManagedConf(settings) +
    `hba_file = '${CONTAINER_PATHS.configs}/pg_hba.conf'\nident_file = '${CONTAINER_PATHS.configs}/pg_ident.conf'\n`
  await writeConfigFile(join(configsDir, 'postgresql.conf'), conf)
}

/** Readable by the container's postgres user (no secrets in these files). */
async function writeConfigFile (path: string, content: string): Promise<void> {
  if (await readFile(path, 'utf8').catch(() => '') === content) return
  await writeFile(`${path}.tmp`, content, { mode: 0o644 })
  await rename(`${path}.tmp`, path)
}
