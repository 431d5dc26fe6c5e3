/** Which store the example runs on. For now: the embedded MemoryStore, in memory. */
import { MemoryStore, type SessionStore } from 'fastify-xems'

export interface OpenedStore {
  store: SessionStore
  description: string
  close: () => Promise<void>
}

export async function openStore (_env: NodeJS.ProcessEnv): Promise<OpenedStore> {
  const store = new MemoryStore()
  return { store, description: 'the embedded store (in memory; sessions end with the process)', close: async () => { await store.close() } }
}
