-- fastify-xems PostgresStore, layout format 1: schema "public", table prefix "xems_".
-- Times are milliseconds since the epoch (bigint). Sealed columns are AES-256-GCM, bound to their place.
CREATE SCHEMA IF NOT EXISTS "public";

CREATE TABLE IF NOT EXISTS "public"."xems_meta" (
  name  text PRIMARY KEY,
  value bytea NOT NULL
);

CREATE TABLE IF NOT EXISTS "public"."xems_sessions" (
  id                  text PRIMARY KEY,          -- the record id (a digest of the locator, never the token)
  sandbox             text NOT NULL,
  user_digest         text,                      -- SHA-256 of the user id: the user index
  created_at          bigint NOT NULL,
  last_seen_at        bigint NOT NULL,
  idle_ttl            bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  expires_at          bigint NOT NULL,           -- least(last_seen_at + idle_ttl, absolute_expires_at)
  rotation            jsonb NOT NULL,            -- {cur, seen, past: [{key, box, until}]}: token keys and grace boxes
  binding             bytea NOT NULL,            -- sealed: the user id, bound to id, sandbox, ttl and times
  data                bytea NOT NULL             -- sealed: the session data, bound to id
);
CREATE INDEX IF NOT EXISTS "xems_sessions_expires_at" ON "public"."xems_sessions" (expires_at);
CREATE INDEX IF NOT EXISTS "xems_sessions_user_digest" ON "public"."xems_sessions" (user_digest) WHERE user_digest IS NOT NULL;

CREATE TABLE IF NOT EXISTS "public"."xems_kv" (
  sandbox    text NOT NULL,
  name       text NOT NULL,                      -- SHA-256 of the key
  value      bytea NOT NULL,                     -- sealed, bound to sandbox and key
  expires_at bigint NOT NULL,
  PRIMARY KEY (sandbox, name)
);
CREATE INDEX IF NOT EXISTS "xems_kv_expires_at" ON "public"."xems_kv" (expires_at);

CREATE TABLE IF NOT EXISTS "public"."xems_counters" (
  name     text PRIMARY KEY,                       -- SHA-256 of the key
  count    bigint NOT NULL,
  reset_at bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS "xems_counters_reset_at" ON "public"."xems_counters" (reset_at);

INSERT INTO "public"."xems_meta" (name, value) VALUES ('format', convert_to('1', 'UTF8')) ON CONFLICT (name) DO NOTHING;
