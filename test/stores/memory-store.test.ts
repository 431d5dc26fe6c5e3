import t from 'tap'
import { MemoryStore } from '../../lib/store/memory/memory-store.js'
import { runStoreConformance } from './conformance.js'

t.test('MemoryStore passes the store conformance suite', async (t) => {
  runStoreConformance(t, async () => {
    const store = new MemoryStore()
    return { store, cleanup: async () => { await store.close() } }
  })
})
