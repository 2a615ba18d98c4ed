import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const pkg = require('../package.json') as { version: string }

export const VERSION: string = pkg.version
/** Set at image build time; `unknown` in a plain checkout. */
export const REVISION: string = process.env.PGMESH_REVISION ?? 'unknown'
export const REVISION_TIME: string = process.env.PGMESH_REVISION_TIME ?? ''
