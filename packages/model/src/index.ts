export * from './errors.js'
export * from './ids.js'
export * from './zod-issues.js'
export * from './spec/index.js'
