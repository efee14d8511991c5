/**
 * Progress events that core operations emit. Core code never prints: it calls `onEvent`, and
 * the command chooses a renderer (listr2 in a terminal, plain lines otherwise, JSON lines with --json).
 */
export type ProgressEvent =
  | {type: 'phase'; phase: string; message?: string}
  | {type: 'image-start'; image: string; totalBytes?: number}
  | {type: 'image-done'; image: string; digest: string}
  | {type: 'blob'; image?: string; digest: string; size: number; action: 'copied' | 'skipped' | 'mounted'}
  | {type: 'bytes'; image?: string; digest: string; bytes: number}
  | {type: 'stage-start'; stage: string; message?: string}
  | {type: 'stage-done'; stage: string; message?: string}
  | {type: 'task'; stage?: string; task: string; status: 'start' | 'done' | 'failed' | 'skipped'; message?: string}
  | {type: 'warning'; message: string}
  | {type: 'info'; message: string}

export type OnEvent = (e: ProgressEvent) => void

export const noProgress: OnEvent = () => {}
