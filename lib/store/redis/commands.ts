/**
 * The scripts as ioredis commands: each is defined once on the client (ioredis sends EVALSHA, and the
 * text again by itself when Redis answers NOSCRIPT), and run with the arguments its builder makes.
 */
import type { Cluster, Redis } from 'ioredis'
import type { Reply } from './codec.js'
import type { RedisKeys } from './layout.js'
import { type Arg, SCRIPT } from './scripts/index.js'
import type { Script } from './scripts/define.js'

type ScriptFunction = (...args: Arg[]) => Promise<Reply>

/** What the modules of RedisStore work with: the client, its script commands, the key names. */
export interface RedisParts {
  client: Redis | Cluster
  scripts: ScriptRunner
  keys: RedisKeys
}

/** The numkeys argument of EVALSHA, by the number of keys. */
const NUMKEYS = ['0', '1', '2'] as const

export class ScriptRunner {
  /** The ioredis command of each script. */
  readonly #commands = new Map<Script<never>, ScriptFunction>()

  /** Defines every script on the client, as `<commandPrefix><Name>`. */
  constructor (client: Redis | Cluster, commandPrefix: string) {
    const commands = client as unknown as Record<string, unknown>
    for (const [name, script] of Object.entries(SCRIPT)) {
      const command = commandPrefix + name[0]!.toUpperCase() + name.slice(1)
      client.defineCommand(command, { lua: script.lua })
      const fn = commands[`${command}Buffer`] as ScriptFunction
      this.#commands.set(script, fn.bind(client))
    }
  }

  /** Runs a script (EVALSHA, one round trip) with the arguments its builder makes of `input`. */
  async run<I> (script: Script<I>, input: I): Promise<Reply> {
    const { keys, argv } = script.args(input)
    return await this.#commands.get(script as Script<never>)!(NUMKEYS[keys.length]!, ...keys, ...argv)
  }
}
