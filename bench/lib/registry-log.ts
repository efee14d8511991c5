/**
 * What a registry saw, read from the access log of a sandbox registry (distribution writes one
 * combined-format line per request, `127.0.0.1 - - [date] "PUT /v2/... HTTP/1.1" 201 0 "" "agent"`,
 * including the 401 challenges that its "response completed" lines leave out). Benchmarks bracket
 * each tool's run with `logMark` so the requests of one run are counted apart from the others',
 * and count the same way for every tool.
 *
 * Bytes a destination received are counted from completed blob uploads (a `PUT
 * .../blobs/uploads/<id>?digest=...` answered 201) times the blob's size: distribution stores a
 * blob once for the whole registry, so its disk usage does not grow when a second repository
 * receives the same bytes again, while the log shows every upload.
 */
import {open, stat} from 'node:fs/promises'

export interface LogEntry {
  method: string
  /** path and query as the client sent them */
  uri: string
  status: number
  /** response bytes written (blob GETs: the bytes served) */
  written: number
  userAgent: string
}

/** Current end of the log: pass it to `readLog` to see only what happens after this point. */
export async function logMark(file: string): Promise<number> {
  try {
    return (await stat(file)).size
  } catch {
    return 0
  }
}

// host ident user [time] "METHOD URI PROTO" status bytes "referer" "agent"
const accessLine = /^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+)[^"]*" (\d{3}) (\d+|-) "(?:[^"\\]|\\.)*" "((?:[^"\\]|\\.)*)"/

/** One access log line, or undefined for the registry's other log lines. */
export function parseAccessLine(line: string): LogEntry | undefined {
  const m = accessLine.exec(line)
  if (!m) return undefined
  return {method: m[1]!, uri: m[2]!, status: Number(m[3]), written: m[4] === '-' ? 0 : Number(m[4]), userAgent: m[5]!}
}

/** Requests logged after `from` (a byte offset from `logMark`). */
export async function readLog(file: string, from = 0): Promise<LogEntry[]> {
  const fh = await open(file, 'r')
  let text: string
  try {
    const size = (await fh.stat()).size
    const buf = Buffer.alloc(Math.max(0, size - from))
    await fh.read(buf, 0, buf.length, from)
    text = buf.toString('utf8')
  } finally {
    await fh.close()
  }
  const out: LogEntry[] = []
  for (const line of text.split('\n')) {
    const e = parseAccessLine(line)
    if (e) out.push(e)
  }
  return out
}

export interface RequestStats {
  total: number
  byMethod: Record<string, number>
  byStatus: Record<string, number>
  /** answered 401: a challenge, or a request sent without (valid) credentials */
  unauthorized: number
  blobHeads: number
  /** blob GETs and the bytes they served */
  blobGets: number
  blobBytesServed: number
  manifestGets: number
  manifestPuts: number
  uploadsStarted: number
  /** completed blob uploads and the bytes they brought (from `sizes`) */
  uploadsCompleted: number
  bytesReceived: number
  /** digests of completed uploads whose size `sizes` did not know (their bytes are not counted) */
  unknownUploads: string[]
  mounts: {mounted: number; declined: number}
}

const blobPath = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/
const uploadsPath = /^\/v2\/.+\/blobs\/uploads\/?[^/]*$/
const manifestPath = /^\/v2\/.+\/manifests\/[^/]+$/

/** Counts of what a registry served and received; `sizes` maps blob digests to their sizes. */
export function requestStats(entries: LogEntry[], sizes: Map<string, number> = new Map()): RequestStats {
  const s: RequestStats = {
    total: 0, byMethod: {}, byStatus: {}, unauthorized: 0, blobHeads: 0, blobGets: 0, blobBytesServed: 0,
    manifestGets: 0, manifestPuts: 0, uploadsStarted: 0, uploadsCompleted: 0, bytesReceived: 0, unknownUploads: [],
    mounts: {mounted: 0, declined: 0},
  }
  for (const e of entries) {
    s.total++
    s.byMethod[e.method] = (s.byMethod[e.method] ?? 0) + 1
    s.byStatus[e.status] = (s.byStatus[e.status] ?? 0) + 1
    if (e.status === 401) {
      s.unauthorized++
      continue
    }
    const u = new URL(e.uri, 'http://registry')
    const path = u.pathname
    if (blobPath.test(path)) {
      if (e.method === 'HEAD') s.blobHeads++
      if (e.method === 'GET' && e.status < 300) {
        s.blobGets++
        s.blobBytesServed += e.written
      }
    } else if (manifestPath.test(path)) {
      if (e.method === 'GET') s.manifestGets++
      if (e.method === 'PUT' && e.status < 300) s.manifestPuts++
    } else if (uploadsPath.test(path)) {
      const mount = u.searchParams.get('mount')
      if (e.method === 'POST' && mount) {
        if (e.status === 201) s.mounts.mounted++
        else if (e.status === 202) {
          s.mounts.declined++
          s.uploadsStarted++
        }
      } else if (e.method === 'POST' && e.status === 202) {
        s.uploadsStarted++
      } else if (e.method === 'PUT' && e.status === 201) {
        const digest = u.searchParams.get('digest') ?? ''
        s.uploadsCompleted++
        const size = sizes.get(digest)
        if (size === undefined) s.unknownUploads.push(digest)
        else s.bytesReceived += size
      }
    }
  }
  return s
}
