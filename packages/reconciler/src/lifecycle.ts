import type { Startable } from '@pgmesh/model'

/** Starts parts in order. */
export async function startAll (parts: readonly Startable[]): Promise<void> {
  for (const part of parts) await part.start()
}

/** Stops parts in the reverse order. */
export async function stopAll (parts: readonly Startable[]): Promise<void> {
  for (const part of [...parts].reverse()) await part.stop()
}
