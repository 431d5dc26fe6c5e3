/**
 * The store conformance suite, published as `fastify-xems/conformance`: every SessionStore must pass it
 * unchanged. It runs under any test runner that takes (name, fn) (node:test, tap, mocha, vitest...):
 * each case gets a fresh store from your factory, asserts with node:assert, and cleans up.
 *
 *   import { test } from 'node:test'
 *   import { runStoreConformance } from 'fastify-xems/conformance'
 *   runStoreConformance(async () => ({ store: new MyStore(), cleanup: async () => {} }), { test })
 *
 * A store judges expiry by the `now` it is given (it may also expire data physically, as Redis does),
 * so the suite moves time by passing later `now` values instead of sleeping.
 */
import { registerMigrationCases } from './cases-migration.js'
import { registerRotationCases } from './cases-rotation.js'
import { registerSessionsCases } from './cases-sessions.js'
import { registerUsersCases } from './cases-users.js'
import { registerValuesCases } from './cases-values.js'
import { contextOf, type CaseContext, type StoreConformanceOptions, type StoreFactory } from './context.js'

export type { StoreConformanceOptions, StoreFactory, StoreUnderTest } from './context.js'

/** Registers every case of the suite with `options.test`. */
export function runStoreConformance (makeStore: StoreFactory, options: StoreConformanceOptions): void {
  const t0 = Date.now()
  const test = (name: string, body: (context: CaseContext) => Promise<void>): void => {
    options.test(name, async () => {
      const { store, cleanup } = await makeStore()
      try {
        await body(contextOf(store, t0))
      } finally {
        await cleanup()
      }
    })
  }

  registerSessionsCases(test, t0)
  registerRotationCases(test, t0)
  registerMigrationCases(test, t0)
  registerUsersCases(test, t0)
  registerValuesCases(test, t0)
}
