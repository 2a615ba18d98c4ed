import type { Command } from 'commander'
import { registerClusterCommands } from './cluster.js'
import { registerCompletion } from './completion.js'
import { registerDatabaseCommands } from './databases.js'
import { registerOperationCommands } from './operations.js'
import { registerTaskCommands } from './tasks.js'
import { registerTokenCommands } from './tokens.js'

export { EXIT } from './errors.js'

/** The operator's commands: a client of any host's v1 API (never the daemon's internals). */
export function registerClientCommands (program: Command): void {
  registerClusterCommands(program)
  const db = registerDatabaseCommands(program)
  registerOperationCommands(program, db)
  registerTaskCommands(program)
  registerTokenCommands(program)
  registerCompletion(program)
}
