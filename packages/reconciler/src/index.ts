export { Reconciler, type ReconcilerOptions } from './reconciler.js'
export { plan, hashOf } from './plan.js'
export { outcome, type Outcome } from './outcome.js'
export type { Action, Desired, DesiredDatabase, Observed, AppliedInstance, LocalInstance } from './types.js'
