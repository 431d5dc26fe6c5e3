import { createHash, createHmac } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Keyring } from '../../crypto/cipher.js'
import { badOption, xemsError } from '../../errors.js'
import { HOST_TAG_BYTES } from './format.js'

/**
 * The keys of the vault: one AES-256-GCM key per configured secret, derived by HKDF with the purpose
 * `xems/vault/v1` and, for host-bound files, a salt made from the machine id. Records are sealed with
 * the first secret and open with any of them, so a rotated secret still opens what the old one sealed.
 */
const PURPOSE = 'xems/vault/v1'
const MACHINE_ID_FILES = ['/etc/machine-id', '/var/lib/dbus/machine-id']

/** What opening a record found. */
export type OpenOutcome =
  | { ok: true, plain: Buffer }
  /** Sealed by a key none of the secrets derives (another secret, or another host's key). */
  | { ok: false, reason: 'unknown-key' }
  /** Sealed by a known key but does not authenticate: tampered, truncated, or moved. */
  | { ok: false, reason: 'tampered' }

export interface VaultKeyOptions {
  /** 32-byte secrets, newest first. */
  secrets: Buffer[]
  /** Seal new files bound to this host. */
  bindToHost: boolean
  /** The host identity to use instead of the machine id (tests, containers without a stable one). */
  hostId?: string
}

export class VaultKeys {
  readonly #secrets: Buffer[]
  readonly #bindToHost: boolean
  readonly #hostIdOption: string | undefined
  #host: { salt: Buffer, tag: Buffer } | null = null
  readonly #openers = new Map<string, Keyring[]>()
  #sealer: { keyring: Keyring, hostTag: Buffer | null } | null = null

  constructor (options: VaultKeyOptions) {
    this.#secrets = options.secrets
    this.#bindToHost = options.bindToHost
    this.#hostIdOption = options.hostId
  }

  /** Reads the host identity if sealing needs it; call before `sealer`. */
  async prepare (): Promise<void> {
    if (this.#bindToHost) await this.#hostIdentity()
    const host = this.#bindToHost ? this.#host! : null
    this.#sealer = { keyring: new Keyring([this.#secrets[0]!], PURPOSE, host?.salt), hostTag: host?.tag ?? null }
  }

  /** The keyring new files are sealed with, and the host tag their header carries. */
  get sealer (): { keyring: Keyring, hostTag: Buffer | null } {
    if (this.#sealer === null) throw new Error('VaultKeys.prepare() was not called')
    return this.#sealer
  }

  /**
   * Prepares opening a file with header host tag `hostTag`. Fails with FST_XEMS_VAULT_OTHER_HOST
   * when the file is bound to a host other than this one.
   */
  async openerFor (hostTag: Buffer | null, file: string): Promise<(sealed: Buffer, aad: string) => OpenOutcome> {
    let salt: Buffer | undefined
    let cacheKey = 'unbound'
    if (hostTag !== null) {
      const host = await this.#hostIdentity()
      if (!host.tag.equals(hostTag)) {
        throw xemsError('FST_XEMS_VAULT_OTHER_HOST', [file])
      }
      salt = host.salt
      cacheKey = 'bound'
    }
    let keyrings = this.#openers.get(cacheKey)
    if (keyrings === undefined) {
      keyrings = this.#secrets.map((secret) => new Keyring([secret], PURPOSE, salt))
      this.#openers.set(cacheKey, keyrings)
    }
    const rings = keyrings
    return (sealed, aad) => {
      for (const ring of rings) {
        // A one-key ring calls a record stale exactly when another key sealed it.
        if (ring.isStale(sealed)) continue
        const plain = ring.open(sealed, aad)
        return plain === null ? { ok: false, reason: 'tampered' } : { ok: true, plain }
      }
      return { ok: false, reason: 'unknown-key' }
    }
  }

  async #hostIdentity (): Promise<{ salt: Buffer, tag: Buffer }> {
    if (this.#host !== null) return this.#host
    const id = this.#hostIdOption ?? await readMachineId()
    this.#host = {
      salt: createHash('sha256').update('xems/vault/host-salt/v1\u0000').update(id, 'utf8').digest(),
      // An application-specific keyed hash, as machine-id(5) recommends: the file never shows the id.
      tag: createHmac('sha256', Buffer.from(id, 'utf8')).update('xems/vault/host-tag/v1').digest().subarray(0, HOST_TAG_BYTES)
    }
    return this.#host
  }
}

/** The machine id from /etc/machine-id, or /var/lib/dbus/machine-id. */
async function readMachineId (): Promise<string> {
  for (const file of MACHINE_ID_FILES) {
    try {
      const id = (await readFile(file, 'utf8')).trim()
      if (id.length > 0) return id
    } catch {
      // try the next one
    }
  }
  throw badOption('bindToHost', `(or a vault bound to its host) needs a machine id, but neither ${MACHINE_ID_FILES.join(' nor ')} ` +
    'could be read; give a stable host identity as option "hostId"')
}
