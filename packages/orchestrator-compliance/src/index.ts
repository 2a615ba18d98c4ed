export { type ComplianceTarget, orchestratorCompliance } from './compliance.js'
export { admin, eventually, query, type Target } from './sql.js'
