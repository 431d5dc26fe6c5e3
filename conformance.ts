/**
 * `fastify-xems/conformance`: the store conformance suite, for anyone who writes a SessionStore.
 * See docs/stores.md, "Writing a store".
 */
export { runStoreConformance } from './lib/store/conformance/index.js'
export type { StoreUnderTest, StoreFactory, StoreConformanceOptions } from './lib/store/conformance/index.js'
