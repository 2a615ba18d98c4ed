/** libp2p's Startable: every part of the reconciler that runs something in the background starts and stops so. */
export interface Startable {
  start: () => Promise<void> | void
  stop: () => Promise<void> | void
}

/** Starts parts in order. */
export async function startAll (parts: readonly Startable[]): Promise<void> {
  for (const part of parts) await part.start()
}

/** Stops parts in the reverse order. */
export async function stopAll (parts: readonly Startable[]): Promise<void> {
  for (const part of [...parts].reverse()) await part.stop()
}
