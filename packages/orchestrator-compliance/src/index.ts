export { type ComplianceTarget, orchestratorCompliance } from './compliance.js'
