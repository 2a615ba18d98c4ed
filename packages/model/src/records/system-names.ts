// How the control plane names what it creates on every instance; imports nothing, so spec rules and records alike
// can use it.

/** The control plane's own superuser, created by initdb; it connects over the unix socket (trust) and from peers. */
export const SYSTEM_SUPERUSER = 'pgmesh'

/**
 * The schema of the pglogical DDL capture (@pgmesh/replication). Its SECURITY DEFINER event triggers run in every
 * session, so the orchestrators create it, owned by SYSTEM_SUPERUSER, right after the application database, before
 * any user can connect to it (issue 16).
 */
export const REPLICATION_SCHEMA = 'pgmesh_repl'
