/**
 * The published conformance suite (fastify-xems/conformance, lib/store/conformance) under tap: each
 * case a subtest of `t`, with a fresh store from `makeStore`.
 */
import type { Test } from 'tap'
import { runStoreConformance as runCases, type StoreFactory } from '../../conformance.js'

export type { StoreUnderTest } from '../../conformance.js'

export function runStoreConformance (t: Test, makeStore: StoreFactory): void {
  runCases(makeStore, {
    test: (name, fn) => t.test(name, async (t) => {
      await fn()
      t.pass('the case ran to its end')
    })
  })
}
