// Database spec: schemas (validation, types, OpenAPI from one source), validation, defaults and secret handling.
export * from './schemas.js'
export * from './validate.js'
export * from './defaults.js'
export * from './secrets.js'
export { CPUS_PATTERN, formatBytes, formatCpus, parseBytes, parseCpus, type ParsedQuantity } from './units.js'
export { formatPath, mapKey, segmentsFromZodPath, type MapKey, type PathSegment } from './paths.js'
