/**
 * A RedisStore script: its Lua source and the typed builder of its KEYS and ARGV, made from ONE list of
 * named fields. The Lua reads its arguments through a header generated from that list
 * (`local <name> = KEYS[i]`, `local <name> = ARGV[i]`, ...), and the builder writes them in that order,
 * so the two cannot drift apart.
 *
 * Field kinds, as the Lua sees them (every Redis argument is a string):
 *   text    the string as passed (a string or the bytes of a Buffer)
 *   number  `tonumber(ARGV[i])`, with the text itself as `<name>Text`; the builder writes String(n)
 *   flag    `ARGV[i] == '1'`; the builder writes '1' or '0'
 *   list    `tonumber(ARGV[i])`, the length of a list whose entries follow the named fields (in field
 *           order); the header declares `<name>From`, the index of its first entry in ARGV
 * A script may end with a rest: entries after the named fields and the lists, from `<rest>From` to #ARGV.
 */

/** One argument as ioredis sends it. */
export type Arg = string | Buffer

export type ArgKind = 'text' | 'number' | 'flag' | 'list'

type ValueOf<K extends ArgKind> =
  K extends 'number' ? number : K extends 'flag' ? boolean : K extends 'list' ? readonly Arg[] : Arg

/** What a builder takes: every key and every field by name, and the rest when the script has one. */
export type ScriptInput<K extends readonly string[], A extends Readonly<Record<string, ArgKind>>, R extends string> =
  { readonly [N in K[number]]: string } & { readonly [N in keyof A]: ValueOf<A[N]> } & { readonly [N in R]: readonly Arg[] }

/** The arguments of one script call. */
export interface ScriptArgs {
  keys: string[]
  argv: Arg[]
}

export interface Script<I> {
  /** The Lua source: prelude (when asked), argument header, body. */
  readonly lua: string
  /** The KEYS and ARGV of one call, in the order the header reads them. */
  args: (input: I) => ScriptArgs
}

export interface ScriptDefinition<K extends readonly string[], A extends Readonly<Record<string, ArgKind>>, R extends string> {
  /** Shared Lua put before the header (the prelude of the session scripts), or ''. */
  prelude: string
  /** KEYS, in order: each becomes `local <name> = KEYS[i]`. */
  keys: K
  /** ARGV, in order (object keys keep their insertion order): each becomes a local of its name. */
  argv: A
  /** The name of the trailing entries, if any (`<rest>From` is the index of the first). */
  rest?: R
  body: string
}

function header (keys: readonly string[], names: readonly string[], kinds: readonly ArgKind[], rest: string | undefined): string {
  const lines: string[] = ['-- KEYS and ARGV, by name, as the builder writes them (generated: scripts/define.ts)']
  keys.forEach((name, i) => { lines.push(`local ${name} = KEYS[${i + 1}]`) })
  let from = String(names.length + 1)
  names.forEach((name, i) => {
    const arg = `ARGV[${i + 1}]`
    switch (kinds[i]) {
      case 'text': lines.push(`local ${name} = ${arg}`); break
      case 'number': lines.push(`local ${name}, ${name}Text = tonumber(${arg}), ${arg}`); break
      case 'flag': lines.push(`local ${name} = ${arg} == '1'`); break
      case 'list':
        lines.push(`local ${name}, ${name}From = tonumber(${arg}), ${from}`)
        from = `${name}From + ${name}`
        break
    }
  })
  if (rest !== undefined) lines.push(`local ${rest}From = ${from}`)
  return lines.join('\n') + '\n'
}

export function defineScript<
  const K extends readonly string[],
  const A extends Readonly<Record<string, ArgKind>>,
  const R extends string = never
> (
  definition: ScriptDefinition<K, A, R>
): Script<ScriptInput<K, A, R>> {
  const keys = definition.keys
  const names = Object.keys(definition.argv)
  const kinds = names.map((name) => definition.argv[name]!)
  const lists = names.filter((_, i) => kinds[i] === 'list')
  const rest = definition.rest
  const lua = definition.prelude + header(keys, names, kinds, rest) + definition.body
  return {
    lua,
    args (input) {
      const fields = input as unknown as Readonly<Record<string, string | Arg | number | boolean | readonly Arg[]>>
      const keyArgs: string[] = []
      for (const name of keys) keyArgs.push(fields[name] as string)
      const argv: Arg[] = []
      for (let i = 0; i < names.length; i++) {
        const value = fields[names[i]!]
        switch (kinds[i]) {
          case 'number': argv.push(String(value)); break
          case 'flag': argv.push(value ? '1' : '0'); break
          case 'list': argv.push(String((value as readonly Arg[]).length)); break
          default: argv.push(value as Arg)
        }
      }
      for (const name of lists) for (const entry of fields[name] as readonly Arg[]) argv.push(entry)
      if (rest !== undefined) for (const entry of fields[rest] as readonly Arg[]) argv.push(entry)
      return { keys: keyArgs, argv }
    }
  }
}
