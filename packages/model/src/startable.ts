/**
 * The one lifecycle shape of everything that runs (libp2p's `Startable`): started once its dependencies run, stopped
 * in the reverse order; stop is safe to call twice.
 */
export interface Startable {
  start: () => void | Promise<void>
  stop: () => void | Promise<void>
}
