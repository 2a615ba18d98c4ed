export type { AuthMode, AuthOptions, Identity } from './auth.js'
export { createApp, openApiDocument, type App, type AppOptions } from './app.js'
export { type ApiComponents, apiComponents } from './components.js'
export { DEFAULT_REQUEST_LIMITS, type RequestLimits, type RateBudget, type ClientIdentity } from './request-limits.js'
