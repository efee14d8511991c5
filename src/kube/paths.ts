/**
 * Field paths as kpi prints them: a list whose items all have distinct names (containers, env,
 * volumes, ports) is addressed by name, as Kubernetes merges it (`containers[name=controller]`);
 * any other list by index.
 */

/** The items' names, when every item is an object with a name of its own; otherwise undefined. */
export function itemNames(list: unknown[]): string[] | undefined {
  const out = list.map((x) => (x && typeof x === 'object' && typeof (x as {name?: unknown}).name === 'string' ? (x as {name: string}).name : undefined))
  if (out.some((n) => n === undefined)) return undefined
  return new Set(out).size === out.length ? (out as string[]) : undefined
}

/** `[name=x]`, quoted when the name would break the path. */
export const nameSegment = (n: string): string => `[name=${/^[A-Za-z0-9_./-]+$/.test(n) ? n : JSON.stringify(n)}]`

/** The path segment of each item of a list: by name where itemNames gives names, else `[i]`. */
export function itemSegments(list: unknown[]): string[] {
  const names = itemNames(list)
  return list.map((_, i) => (names ? nameSegment(names[i]!) : `[${i}]`))
}
