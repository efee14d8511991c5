/**
 * Deterministic serialisation of rendered objects: map keys sorted at every depth, list order
 * kept (it carries meaning: buildpack order, env order), one YAML document per object in render
 * order. Same objects, same bytes, whatever order their keys were built in.
 */
import {stringify} from 'yaml'
import {canonical} from '../canonical.js'
import type {KubeObject, RenderedObject} from './types.js'

/**
 * Multi-document YAML. Written as YAML 1.1 so strings the Kubernetes YAML decoder (a YAML 1.1
 * parser) would read as booleans or numbers, like `yes` or `0755`, come out quoted.
 */
export function toYaml(objects: Array<RenderedObject | KubeObject>): string {
  return objects
    .map((o) => ('stage' in o && 'object' in o ? (o as RenderedObject).object : (o as KubeObject)))
    .map((o) => '---\n' + stringify(canonical(o), {version: '1.1', lineWidth: 0, minContentWidth: 0, indentSeq: true, aliasDuplicateObjects: false}))
    .join('')
}

/** The JSON form of the objects (keys sorted), for `--json`. */
export function toJsonObjects(objects: RenderedObject[]): Array<{stage: string; object: KubeObject}> {
  return objects.map((o) => ({stage: o.stage, object: canonical(o.object)}))
}
