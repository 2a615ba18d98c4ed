// Bundles the pgmesh executable (cmd/pgmesh/dist/main.js and everything it imports) into cmd/pgmesh/bin/ with esbuild.
// Why: loading ~2,000 ES modules one by one cost a daemon 2.3-3.2 CPU seconds and ~25 MB of RSS before it did any
// work, which capped how many daemons one machine can start (issue 18). The bundle starts in ~1.2 CPU s. Dynamic
// imports stay separate chunks, so the CLI still loads no daemon code. Run after `tsc -b` (`npm run build` does both).
import { build } from 'esbuild'
import { cp, mkdir, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const out = join(root, 'cmd/pgmesh/bin')
const require = createRequire(join(root, 'packages/state/package.json'))

await rm(out, { recursive: true, force: true })
await mkdir(out, { recursive: true })
await build({
  entryPoints: { pgmesh: join(root, 'cmd/pgmesh/dist/main.js') },
  outdir: out,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // V8 keeps each module's source for its lazily compiled functions: 12 MB of the heap as bundled, twice the files'
  // size because comments with non-ASCII characters made them UTF-16. Without comments and indentation: 4.5 MB.
  // Identifiers are kept, so stack traces still name functions.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'linked',
  // Native addons (optional in dockerode's ssh2) cannot be bundled; they load from node_modules as before.
  external: ['ssh2', 'cpu-features', '*.node'],
  // CommonJS dependencies call require and read __dirname (Automerge finds its WebAssembly file by it).
  banner: {
    js: [
      "import { createRequire as __pgmeshCreateRequire } from 'node:module'",
      "import { fileURLToPath as __pgmeshFileURLToPath } from 'node:url'",
      "import { dirname as __pgmeshDirname } from 'node:path'",
      'const require = __pgmeshCreateRequire(import.meta.url)',
      'const __filename = __pgmeshFileURLToPath(import.meta.url)',
      'const __dirname = __pgmeshDirname(__filename)'
    ].join(';')
  },
  logLevel: 'warning'
})
// Files the bundled code reads beside itself: Automerge's WebAssembly and the console's scripts.
const entry = require.resolve('@automerge/automerge')
const automerge = entry.slice(0, entry.lastIndexOf('/dist/'))
await cp(join(automerge, 'dist/mjs/wasm_bindgen_output/nodejs/automerge_wasm_bg.wasm'), join(out, 'automerge_wasm_bg.wasm'))
await cp(join(root, 'packages/console/dist/client'), join(out, 'client'), { recursive: true })
