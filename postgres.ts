/**
 * `fastify-xems/postgres`: the PostgreSQL session store. Apart from the main entry so that an app
 * without PostgreSQL never loads `pg` (an optional peer dependency).
 */
export { PostgresStore, POSTGRES_SEAL_PURPOSE } from './lib/store/postgres/postgres-store.js'
export type { PostgresStoreOptions, PostgresStoreSecret } from './lib/store/postgres/postgres-store.js'
export { POSTGRES_FORMAT_VERSION, postgresSchemaSql } from './lib/store/postgres/schema.js'
