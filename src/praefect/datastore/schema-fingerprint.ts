// A normalised description of a database schema (types, tables and columns, constraints,
// indexes, sequences, views, triggers and functions), read from the catalogs through
// PostgreSQL's own deparsers. Two schemas with the same fingerprint are interchangeable for
// Praefect; the tests compare ours with one derived from upstream's praefect-schema.sql.
import type pg from "pg";
import type { Queryable } from "./db.js";

export interface SchemaFingerprint {
  enums: { name: string; labels: string[] }[];
  relations: {
    name: string;
    kind: "table" | "view";
    columns: { name: string; type: string; notNull: boolean; default: string | null }[];
  }[];
  constraints: { table: string; name: string; type: string; definition: string; validated: boolean }[];
  indexes: { table: string; name: string; definition: string }[];
  sequences: { name: string; type: string; start: string; increment: string; ownedBy: string | null }[];
  views: { name: string; definition: string }[];
  triggers: { table: string; name: string; definition: string; enabled: string }[];
  functions: { name: string; arguments: string; result: string; language: string }[];
}

/** Deparsed SQL differs only in layout between equal objects; compare it whitespace-insensitively. */
function squash(sql: string): string {
  return sql.replace(/\s+/g, " ").trim();
}

/**
 * \`x AT TIME ZONE z\` and \`timezone(z, x)\` are the same call; newer servers print the first
 * for columns declared that way, while a schema restored from an old dump prints the second.
 */
function normaliseDefault(expression: string | null): string | null {
  return expression?.replace(/^\((.+) AT TIME ZONE (.+)\)$/, "timezone($2, $1)") ?? null;
}

async function rows<R extends pg.QueryResultRow>(db: Queryable, text: string): Promise<R[]> {
  return (await db.query<R>(text)).rows;
}

/** Reads the fingerprint of the `public` schema. The schema_migrations bookkeeping table is included. */
export async function schemaFingerprint(db: Queryable): Promise<SchemaFingerprint> {
  const enums = await rows<{ name: string; labels: string[] }>(
    db,
    `SELECT t.typname AS name, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
     FROM pg_type t
     JOIN pg_namespace n ON n.oid = t.typnamespace
     JOIN pg_enum e ON e.enumtypid = t.oid
     WHERE n.nspname = 'public'
     GROUP BY t.typname
     ORDER BY t.typname`,
  );

  const columns = await rows<{
    relation: string;
    relkind: string;
    name: string;
    type: string;
    not_null: boolean;
    default: string | null;
  }>(
    db,
    `SELECT c.relname AS relation, c.relkind::text AS relkind, a.attname AS name,
            format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
            pg_get_expr(d.adbin, d.adrelid) AS default
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')
     ORDER BY c.relname, a.attnum`,
  );
  const relations: SchemaFingerprint["relations"] = [];
  for (const col of columns) {
    let rel = relations.at(-1);
    if (rel?.name !== col.relation) {
      rel = { name: col.relation, kind: col.relkind === "v" ? "view" : "table", columns: [] };
      relations.push(rel);
    }
    rel.columns.push({ name: col.name, type: col.type, notNull: col.not_null, default: normaliseDefault(col.default) });
  }

  const constraints = await rows<{ table: string; name: string; type: string; definition: string; validated: boolean }>(
    db,
    `SELECT c.relname AS table, con.conname AS name, con.contype::text AS type,
            pg_get_constraintdef(con.oid) AS definition, con.convalidated AS validated
     FROM pg_constraint con
     JOIN pg_class c ON c.oid = con.conrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND con.contype <> 'n'
     ORDER BY c.relname, con.conname`,
  );

  const indexes = await rows<{ table: string; name: string; definition: string }>(
    db,
    `SELECT tablename AS table, indexname AS name, indexdef AS definition
     FROM pg_indexes
     WHERE schemaname = 'public'
     ORDER BY tablename, indexname`,
  );

  const sequences = await rows<{
    name: string;
    type: string;
    start: string;
    increment: string;
    owned_by: string | null;
  }>(
    db,
    `SELECT s.sequencename AS name, format_type(s.data_type, NULL) AS type,
            s.start_value::text AS start, s.increment_by::text AS increment,
            (SELECT t.relname || '.' || a.attname
             FROM pg_depend d
             JOIN pg_class t ON t.oid = d.refobjid
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.deptype = 'a'
               AND d.objid = (quote_ident(s.schemaname) || '.' || quote_ident(s.sequencename))::regclass) AS owned_by
     FROM pg_sequences s
     WHERE s.schemaname = 'public'
     ORDER BY s.sequencename`,
  );

  const views = await rows<{ name: string; definition: string }>(
    db,
    `SELECT c.relname AS name, pg_get_viewdef(c.oid) AS definition
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'v'
     ORDER BY c.relname`,
  );

  const triggers = await rows<{ table: string; name: string; definition: string; enabled: string }>(
    db,
    `SELECT c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS definition,
            t.tgenabled::text AS enabled
     FROM pg_trigger t
     JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND NOT t.tgisinternal
     ORDER BY c.relname, t.tgname`,
  );

  // Function bodies are our own text; name, signature and language are what triggers bind to.
  const functions = await rows<{ name: string; arguments: string; result: string; language: string }>(
    db,
    `SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,
            pg_get_function_result(p.oid) AS result, l.lanname AS language
     FROM pg_proc p
     JOIN pg_namespace n ON n.oid = p.pronamespace
     JOIN pg_language l ON l.oid = p.prolang
     WHERE n.nspname = 'public'
     ORDER BY p.proname, 2`,
  );

  return {
    enums,
    relations,
    constraints,
    indexes: indexes.map((i) => ({ ...i, definition: squash(i.definition) })),
    sequences: sequences.map(({ owned_by, ...s }) => ({ ...s, ownedBy: owned_by })),
    views: views.map((v) => ({ name: v.name, definition: squash(v.definition) })),
    triggers: triggers.map((t) => ({ ...t, definition: squash(t.definition) })),
    functions,
  };
}

/**
 * Loads a plain-text pg_dump of one database (such as upstream's praefect-schema.sql) into
 * the database `client` is connected to. The dump's own CREATE DATABASE and \connect lines
 * are skipped. Use a dedicated client: the dump clears search_path for its session.
 */
export async function loadSchemaDump(client: pg.Client, dump: string): Promise<void> {
  const statements = dump
    .split("\n")
    .filter((line) => !/^\s*(CREATE DATABASE|\\connect)\b/.test(line))
    .join("\n");
  await client.query(statements);
}
