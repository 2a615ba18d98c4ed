/**
 * Automerge's WebAssembly memory, for the `pgmesh_automerge_memory_bytes` gauge. Automerge instantiates its module
 * when it is first imported and keeps the instance to itself, so the daemon watches instantiations from before it
 * imports Automerge (`watchAutomergeMemory`, first thing in `pgmesh run`) and keeps the memory of the one module that
 * exports Automerge's functions. Why a gauge: this memory only grows (WebAssembly memory cannot shrink), and loading
 * a whole document (a restart, a join) takes it far above what the loaded document needs (packages/state/README.md).
 */

// The parts of the WebAssembly API used here (this project's TypeScript libs do not declare it).
interface WasmMemory { readonly buffer: ArrayBuffer }
interface WasmInstance { readonly exports: Record<string, unknown> }
type WasmInstanceConstructor = new (module: unknown, imports?: unknown) => WasmInstance
interface WasmApi { Instance: WasmInstanceConstructor, Memory: abstract new (...args: never[]) => WasmMemory }

const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly
let automergeMemory: WasmMemory | undefined
let watching = false

export function watchAutomergeMemory (): void {
  if (watching) return
  watching = true
  const Instance = wasm.Instance
  const watched = function (module: unknown, imports?: unknown): WasmInstance {
    const instance = new Instance(module, imports)
    const { memory, automerge_applyChanges: automergeFunction } = instance.exports
    if (automergeMemory === undefined && typeof automergeFunction === 'function' && memory instanceof wasm.Memory) automergeMemory = memory
    return instance
  }
  watched.prototype = Instance.prototype
  wasm.Instance = watched as unknown as WasmInstanceConstructor
}

/** Bytes of Automerge's WebAssembly memory; undefined until Automerge has loaded under `watchAutomergeMemory`. */
export function automergeMemoryBytes (): number | undefined {
  return automergeMemory?.buffer.byteLength
}
