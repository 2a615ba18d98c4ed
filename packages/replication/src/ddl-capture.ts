import type { Sql } from './driver.js'

/**
 * Automatic DDL replication for pglogical, the way Spock's `spock.enable_ddl_replication` works for pgEdge's users:
 * a plain `CREATE TABLE` on any node reaches every other node, with no `replicate_ddl_command`.
 *
 * An event trigger (ddl_command_end) takes the client's statement text (`current_query()`), keeps
 * the DDL statements of it, and queues each, with its role and search_path, into `pgmesh_repl.queued_ddl` (see
 * there for why not pglogical.queue, as `pglogical.replicate_ddl_command` does), without running it a
 * second time here. The row commits with the DDL, so it reaches the subscribers in commit order, before any row
 * written to the new table; each subscriber runs it as the same role (so the table has the same owner everywhere)
 * and on the session's `search_path`.
 *
 * Not captured: DDL that a subscriber's apply worker or a joining node's schema copy runs
 * (`session_replication_role = replica`, `pglogical.subscription_schema_restore`), sessions that set
 * `pgmesh.replicate_ddl = off` (the control plane's own, or a user's deliberate local change), statements run by
 * `pglogical.replicate_ddl_command` (queued already: the same text is in this transaction's queue rows), temporary
 * objects, and cluster-wide objects (roles, databases, tablespaces: event triggers never see those). `CONCURRENTLY` is dropped from index statements on the
 * subscribers (queued SQL runs inside the apply transaction).
 *
 * Not replicable, so refused with a WARNING in the client's session and a row in `pgmesh_repl.unreplicated_ddl`:
 * `CREATE TABLE … AS` and `SELECT … INTO` (their rows come from this node's data; use CREATE TABLE, then INSERT …
 * SELECT), and DDL run inside a function or a DO block (its text is not the client's statement; use
 * `pglogical.replicate_ddl_command`). Such tables stay out of the replication sets.
 *
 * Why not pgl_ddl_deploy (Debian's postgresql-15-pgl-ddl-deploy): it is built for one provider feeding subscribers,
 * configured per replication set with a deploy step per node, and keeps its own queue and logs; pgmesh needs every node
 * to be both, with no per-set configuration, and its upstream has been quiet since 2023 (no PostgreSQL 17/18). The
 * part that matters, capturing the client's statement in an event trigger and queueing it, is these few functions.
 */

/**
 * Splits a client's query string into statements: quotes, dollar quotes and comments respected, leading comments
 * dropped. It must never see a statement boundary where PostgreSQL's lexer sees none, nor miss one it sees: the
 * subscribers run each statement as one queued command, so text that the origin read inside a string or comment, or
 * as a separate statement, must not run there as SQL of its own (`RESET ROLE`, say). Hence, as in the lexer: block
 * comments nest; `E'` and `$tag$` start a literal only at the start of a token (`name'\'` and `a$$b` do not); a
 * `$tag$` may hold non-ASCII letters; and with standard_conforming_strings off, plain strings take backslash escapes.
 */
const SPLIT_STATEMENTS = `CREATE OR REPLACE FUNCTION pgmesh_repl.split_statements(query text) RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  n int := length(query);
  i int := 1;
  start int := 0;      -- where the current statement's first token begins (0: none yet)
  c text;
  tag text;
  skip int;
  depth int;
  backslashes boolean;
  -- Characters that continue an identifier or keyword (the lexer's ident_cont, every non-ASCII one included).
  ident_char CONSTANT text := '^[A-Za-z0-9_$\\u0080-\\uFFFF]$';
  plain_backslashes CONSTANT boolean := current_setting('standard_conforming_strings') = 'off';
BEGIN
  WHILE i <= n LOOP
    c := substr(query, i, 1);
    IF c = '-' AND substr(query, i, 2) = '--' THEN
      skip := strpos(substr(query, i), E'\\n');
      i := CASE WHEN skip = 0 THEN n + 1 ELSE i + skip END;
      CONTINUE;
    ELSIF c = '/' AND substr(query, i, 2) = '/*' THEN
      depth := 1;
      i := i + 2;
      WHILE i <= n AND depth > 0 LOOP
        IF substr(query, i, 2) = '/*' THEN
          depth := depth + 1;
          i := i + 2;
        ELSIF substr(query, i, 2) = '*/' THEN
          depth := depth - 1;
          i := i + 2;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
      CONTINUE;
    ELSIF c = ';' THEN
      IF start > 0 THEN RETURN NEXT btrim(substr(query, start, i - start)); END IF;
      start := 0;
      i := i + 1;
      CONTINUE;
    ELSIF c ~ '\\s' THEN
      i := i + 1;
      CONTINUE;
    END IF;
    IF start = 0 THEN start := i; END IF;
    IF c = '''' THEN
      -- A quote doubled inside a string is part of it; E'...' strings (E starting its token) also escape with a
      -- backslash, and so do plain ones when standard_conforming_strings is off.
      backslashes := plain_backslashes OR (i > 1 AND upper(substr(query, i - 1, 1)) = 'E' AND (i = 2 OR substr(query, i - 2, 1) !~ ident_char));
      i := i + 1;
      LOOP
        EXIT WHEN i > n;
        IF backslashes AND substr(query, i, 1) = '\\' THEN
          i := i + 2;
        ELSIF substr(query, i, 1) = '''' THEN
          i := i + 1;
          EXIT WHEN substr(query, i, 1) <> '''';
          i := i + 1;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
    ELSIF c = '"' THEN
      skip := strpos(substr(query, i + 1), '"');
      i := CASE WHEN skip = 0 THEN n + 1 ELSE i + skip + 1 END;
    ELSIF c = '$' THEN
      tag := substring(substr(query, i) FROM '^\\$([A-Za-z_\\u0080-\\uFFFF][A-Za-z0-9_\\u0080-\\uFFFF]*)?\\$');
      IF (i > 1 AND substr(query, i - 1, 1) ~ ident_char) OR (tag IS NULL AND substr(query, i, 2) <> '$$') THEN
        i := i + 1;   -- part of an identifier (a$$b), or a positional parameter ($1)
      ELSE
        tag := '$' || coalesce(tag, '') || '$';
        skip := strpos(substr(query, i + length(tag)), tag);
        i := CASE WHEN skip = 0 THEN n + 1 ELSE i + length(tag) + skip - 1 + length(tag) END;
      END IF;
    ELSE
      i := i + 1;
    END IF;
  END LOOP;
  IF start > 0 AND btrim(substr(query, start)) <> '' THEN RETURN NEXT btrim(substr(query, start)); END IF;
END
$fn$`

/**
 * The replicated DDL itself. Not pglogical.queue: Debian's pglogical 2.4.2 applies a queue row by setting the apply
 * worker's role to the queuing role and never sets it back, so every later queue row that worker applies (in the same
 * transaction or any later one) runs as that role, which may not use schema pglogical: "permission denied for schema
 * pglogical", and the subscription stops until the worker restarts. And a role set that way is undone by a plain
 * `RESET ROLE` (or `set_config('role', 'none', false)` in a function a DDL statement calls), which leaves the rest
 * running as the apply worker's superuser. So each statement is a row here, in the insert-only set; the origin
 * deletes it at once (the DELETE does not replicate), so the table stays empty everywhere and a joining node copies
 * nothing. On the subscribers a BEFORE INSERT trigger (ENABLE ALWAYS) runs it, in the transaction's order, keeping
 * no row, inside a SECURITY DEFINER function owned by the role that ran it on the origin: the statement runs as that
 * role, and nothing it calls can change role (PostgreSQL refuses SET ROLE and SET SESSION AUTHORIZATION inside a
 * security-definer function). Only queue_client_ddl (SECURITY DEFINER, deriving the role itself) writes here.
 */
const QUEUED_DDL_TABLE = `CREATE TABLE IF NOT EXISTS pgmesh_repl.queued_ddl (role name NOT NULL, search_path text NOT NULL, statement text NOT NULL)`

const APPLY_QUEUED_DDL = `CREATE OR REPLACE FUNCTION pgmesh_repl.apply_queued_ddl() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF current_setting('session_replication_role') <> 'replica' THEN
    RETURN NEW;
  END IF;
  -- Made afresh for every statement (its owner could have changed it meanwhile), in this session's own schema.
  EXECUTE $create$CREATE OR REPLACE FUNCTION pg_temp.pgmesh_run_ddl(statement text, path text) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER AS $run$
    DECLARE
      previous text := pg_catalog.current_setting('search_path');
    BEGIN
      PERFORM pg_catalog.set_config('search_path', path, true);
      EXECUTE statement;
      PERFORM pg_catalog.set_config('search_path', previous, true);
    END
    $run$$create$;
  EXECUTE format('ALTER FUNCTION pg_temp.pgmesh_run_ddl(text, text) OWNER TO %I', NEW.role);
  PERFORM pg_temp.pgmesh_run_ddl(NEW.statement, NEW.search_path);
  RETURN NULL;
END
$fn$`

/** Local record of what was not replicated, for the operator (the reconciler reports it with the instance). */
const LOCAL_TABLES = `CREATE TABLE IF NOT EXISTS pgmesh_repl.local_tables (relid oid PRIMARY KEY)`

const UNREPLICATED_TABLE = `CREATE TABLE IF NOT EXISTS pgmesh_repl.unreplicated_ddl (
  id bigserial PRIMARY KEY,
  logged_at timestamptz NOT NULL DEFAULT now(),
  role name NOT NULL,
  statement text NOT NULL,
  reason text NOT NULL
)`

const NOT_REPLICATED = `CREATE OR REPLACE FUNCTION pgmesh_repl.not_replicated(statement text, reason text, invoker name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  INSERT INTO pgmesh_repl.unreplicated_ddl (role, statement, reason) VALUES (invoker, statement, reason);
  RAISE WARNING 'pgmesh: not replicated to the other nodes: %', reason
    USING DETAIL = 'statement: ' || left(statement, 500),
          HINT = 'Use CREATE TABLE and then INSERT ... SELECT, or run the DDL through pglogical.replicate_ddl_command.';
END
$fn$`

/**
 * Which statements replicate: DDL on database objects. Returns NULL for a statement that is not replicated at all
 * (queries, DML, transaction control, cluster-wide objects, temporary objects), 'refuse' for one that cannot be, and
 * the text to queue otherwise.
 */
const REPLICABLE_STATEMENT = `CREATE OR REPLACE FUNCTION pgmesh_repl.replicable_statement(statement text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  head text := upper(regexp_replace(left(statement, 400), '\\s+', ' ', 'g'));
BEGIN
  IF head !~ '^(CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|SECURITY LABEL|IMPORT FOREIGN SCHEMA|REFRESH MATERIALIZED VIEW)\\M' THEN
    RETURN NULL;
  END IF;
  IF head ~ '^(CREATE|ALTER|DROP) (ROLE|USER|GROUP|DATABASE|TABLESPACE|SYSTEM|SUBSCRIPTION|EVENT TRIGGER)\\M'
     OR head ~ '^CREATE (OR REPLACE )?(GLOBAL |LOCAL )?(TEMP|TEMPORARY)\\M' THEN
    RETURN NULL;
  END IF;
  -- CREATE TABLE name [(column names)] [USING m] [WITH (...)] [ON COMMIT ...] [TABLESPACE t] AS query
  IF head ~ '^CREATE (UNLOGGED )?TABLE (IF NOT EXISTS )?("[^"]+"|[^ (]+)( ?\\([^()]*\\))?( USING [^ ]+)?( WITH ?\\([^()]*\\))?( TABLESPACE [^ ]+)? ?AS\\M' THEN
    RETURN 'refuse';
  END IF;
  RETURN regexp_replace(statement, '^((CREATE\\s+(UNIQUE\\s+)?INDEX|DROP\\s+INDEX|REINDEX\\s+\\w+)\\s+)CONCURRENTLY\\s+', '\\1', 'i');
END
$fn$`

/**
 * The event trigger's function runs as the client (SECURITY INVOKER, no SET clause) only to read what a definer
 * function cannot: the client's search_path (a function's SET clause hides it). Everything else runs in
 * `queue_client_ddl`, which may write pglogical's queue; it derives the role itself, so calling it directly queues
 * nothing a user could not run.
 */
const CAPTURE_FUNCTION = `CREATE OR REPLACE FUNCTION pgmesh_repl.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pgmesh_repl.queue_client_ddl(pg_catalog.current_query(), pg_catalog.current_setting('search_path'));
END
$fn$`

const QUEUE_CLIENT_DDL = `CREATE OR REPLACE FUNCTION pgmesh_repl.queue_client_ddl(query text, path text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
  -- SECURITY DEFINER hides the caller's current_user; SET ROLE is in the 'role' setting, the login in session_user.
  invoker name := CASE WHEN current_setting('role') = 'none' THEN session_user ELSE current_setting('role')::name END;
  marker text;
  statement text;
  replicable text;
  ddl_found boolean := false;
BEGIN
  IF current_setting('session_replication_role') = 'replica'
     OR current_setting('pgmesh.replicate_ddl', true) = 'off'
     OR current_setting('pglogical.subscription_schema_restore', true) = 'true'
     OR NOT EXISTS (SELECT 1 FROM pglogical.local_node) THEN
    RETURN;
  END IF;
  -- pglogical.replicate_ddl_command queued this very statement already (it queues, then runs it here).
  IF EXISTS (SELECT 1 FROM pglogical.queue q WHERE q.queued_at >= now() AND age(q.xmin) = 0 AND q.message::text = to_json(query)::text) THEN
    RETURN;
  END IF;
  -- pgmesh_repl's own objects: every node installs them itself (replayed, the trigger would replace itself mid-run).
  -- (A DROP reports no commands here: it is never one of these.)
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()) AND NOT EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() d
                  WHERE coalesce(d.schema_name, (SELECT n.nspname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                                                   JOIN pg_namespace n ON n.oid = c.relnamespace
                                                  WHERE d.classid = 'pg_trigger'::regclass AND t.oid = d.objid), '') <> 'pgmesh_repl') THEN
    RETURN;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'SELECT INTO') THEN
    PERFORM pgmesh_repl.not_replicated(query, 'SELECT INTO creates its table on this node only', invoker);
    RETURN;
  END IF;
  -- The trigger fires once per DDL statement of the client's query; the whole query is handled at the first.
  marker := pg_backend_pid()::text || '/' || statement_timestamp()::text || '/' || md5(query);
  IF current_setting('pgmesh.ddl_query', true) = marker THEN
    RETURN;
  END IF;
  PERFORM set_config('pgmesh.ddl_query', marker, false);
  FOR statement IN SELECT s FROM pgmesh_repl.split_statements(query) s LOOP
    replicable := pgmesh_repl.replicable_statement(statement);
    CONTINUE WHEN replicable IS NULL;
    ddl_found := true;
    IF replicable = 'refuse' THEN
      PERFORM pgmesh_repl.not_replicated(statement, 'CREATE TABLE ... AS creates its table from this node''s rows only', invoker);
      CONTINUE;
    END IF;
    INSERT INTO pgmesh_repl.queued_ddl (role, search_path, statement) VALUES (invoker, path, replicable);
    DELETE FROM pgmesh_repl.queued_ddl;   -- only the INSERT replicates (an insert-only set): nothing piles up here
  END LOOP;
  IF NOT ddl_found AND EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE NOT in_extension
                                  AND coalesce(schema_name, '') NOT LIKE 'pg\\_temp%') THEN
    PERFORM pgmesh_repl.not_replicated(query, 'DDL run inside a function or DO block is not replicated automatically', invoker);
  END IF;
END
$fn$`

/** CREATE EVENT TRIGGER has no IF NOT EXISTS. `name` and `definition` are this package's constants, never input. */
export function createEventTriggerOnce (name: string, definition: string): Sql {
  return {
    text: `DO $do$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = '${name}') THEN
    CREATE EVENT TRIGGER ${name} ${definition};
  END IF;
END
$do$`,
    values: []
  }
}

/**
 * Drops pgmesh_repl when it is empty, before a node copies its schema from another node: the orchestrators create
 * the (empty) schema with the database, and the copy (pg_restore, --exit-on-error in one transaction) brings the
 * source's, which would collide. A schema with anything in it stays, and the copy then fails loudly.
 */
export const RELEASE_EMPTY_SCHEMA: Sql = {
  text: `DO $do$
BEGIN
  IF pg_catalog.to_regnamespace('pgmesh_repl') IS NOT NULL THEN
    DROP SCHEMA pgmesh_repl;
  END IF;
EXCEPTION WHEN dependent_objects_still_exist THEN
  NULL;
END
$do$`,
  values: []
}

/** Installs (idempotently) the DDL capture in the pgmesh_repl schema; run after the pglogical node exists. */
export function ddlCaptureStatements (): Sql[] {
  return [
    { text: SPLIT_STATEMENTS, values: [] },
    { text: UNREPLICATED_TABLE, values: [] },
    { text: LOCAL_TABLES, values: [] },
    { text: NOT_REPLICATED, values: [] },
    { text: REPLICABLE_STATEMENT, values: [] },
    { text: QUEUED_DDL_TABLE, values: [] },
    { text: 'REVOKE ALL ON pgmesh_repl.queued_ddl FROM PUBLIC', values: [] },
    { text: APPLY_QUEUED_DDL, values: [] },
    { text: 'CREATE OR REPLACE TRIGGER apply_queued_ddl BEFORE INSERT ON pgmesh_repl.queued_ddl FOR EACH ROW EXECUTE FUNCTION pgmesh_repl.apply_queued_ddl()', values: [] },
    { text: 'ALTER TABLE pgmesh_repl.queued_ddl ENABLE ALWAYS TRIGGER apply_queued_ddl', values: [] },
    {
      text: `SELECT pglogical.replication_set_add_table('default_insert_only', 'pgmesh_repl.queued_ddl'::regclass, false)
  WHERE NOT EXISTS (SELECT 1 FROM pglogical.tables WHERE relid = 'pgmesh_repl.queued_ddl'::regclass AND set_name IS NOT NULL)`,
      values: []
    },
    { text: QUEUE_CLIENT_DDL, values: [] },
    { text: CAPTURE_FUNCTION, values: [] },
    // Enabled for origin sessions only: an apply worker's and a schema copy's DDL is never queued again.
    createEventTriggerOnce('pgmesh_capture_ddl', 'ON ddl_command_end EXECUTE FUNCTION pgmesh_repl.capture_ddl()'),
    // The trigger runs as the client, who must reach queue_client_ddl; nothing else here is theirs to call.
    { text: 'GRANT USAGE ON SCHEMA pgmesh_repl TO PUBLIC', values: [] },
    { text: 'REVOKE ALL ON FUNCTION pgmesh_repl.not_replicated(text, text, name) FROM PUBLIC', values: [] }
  ]
}
