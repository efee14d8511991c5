/**
 * kpack's CustomResourceDefinitions (group kpack.io), written for kpi from kpack's Go API types
 * (pkg/apis/build/v1alpha2). kpack itself ships schemas that accept anything; these are structural,
 * so the apiserver checks what kpi and users write:
 * - the kinds kpi creates (ClusterStack, ClusterStore, ClusterBuilder, Builder, ClusterLifecycle)
 *   have precise spec schemas with the fields kpack's validation requires marked required;
 * - the kinds users and kpack create (Image, Build, SourceResolver, Buildpack, ClusterBuildpack)
 *   type the common fields and keep the rest (x-kubernetes-preserve-unknown-fields), so nothing
 *   kpack understands is pruned;
 * - `status` is kpack's business: preserved as is, behind the status subresource.
 * v1alpha2 is served and stored; v1alpha1 is served too, as kpack does: converted by kpack's webhook
 * for the kinds its conversion controller registers (Image, Build, Builder, SourceResolver), as the
 * same object for ClusterStack, ClusterStore and ClusterBuilder (kpack gives them no conversion, and
 * its webhook writes no CA into them: a Webhook strategy there fails every v1alpha1 read, and the
 * apiserver's watch cache for v1alpha1 retries it without end).
 */
import {KPACK_NAMESPACE} from '../namespaces.js'
import {obj} from './meta.js'
import type {RenderedObject} from './types.js'

type Schema = Record<string, unknown>

export interface KpackFeatures {
  /** ClusterLifecycle replaces the lifecycle-image ConfigMap (kpack >= 0.17) */
  clusterLifecycle: boolean
  /** the controller reads GIT_RESOLVER_USE_SHALLOW_CLONE (absent from 0.16.1, present in 0.17.2) */
  readsShallowCloneFlag: boolean
}

const str: Schema = {type: 'string'}
const nonEmpty: Schema = {type: 'string', minLength: 1}
const preserved: Schema = {type: 'object', 'x-kubernetes-preserve-unknown-fields': true}

function object(properties: Record<string, Schema>, required: string[] = [], extra: Schema = {}): Schema {
  return {type: 'object', properties, ...(required.length ? {required} : {}), ...extra}
}

/** corev1.ObjectReference, as kpack uses it for stack, store, lifecycle and service account refs. */
function ref(required: string[], kinds?: string[]): Schema {
  return object(
    {
      apiVersion: str,
      kind: kinds ? {type: 'string', enum: kinds} : str,
      name: nonEmpty,
      namespace: str,
    },
    required,
  )
}

/** `then` is required whenever `when` is present (a structural stand-in for JSON Schema's dependentRequired). */
const requiredWhen = (when: string, then: string): Schema => ({anyOf: [{required: [then]}, {not: {required: [when]}}]})

/**
 * A group entry is kpack's BuilderBuildpackRef: an inline BuildpackRef (id, version, optional), an
 * inline ObjectReference (kind, name) to a Buildpack/ClusterBuildpack, and an image. kpack's
 * validation wants one of id, image or kind + name, and a reference needs both kind and name.
 * (kpack's webhook then refuses `image` as "currently not supported"; that is kpack's message to
 * give, so the schema admits what kpack's types admit.)
 */
const groupEntry: Schema = object(
  {
    id: nonEmpty,
    version: str,
    optional: {type: 'boolean'},
    kind: {type: 'string', enum: ['Buildpack', 'ClusterBuildpack']},
    name: nonEmpty,
    namespace: str,
    apiVersion: str,
    image: nonEmpty,
  },
  [],
  {
    allOf: [
      {anyOf: [{required: ['id']}, {required: ['image']}, {required: ['kind', 'name']}]},
      requiredWhen('name', 'kind'),
      requiredWhen('kind', 'name'),
    ],
  },
)

// kpack's validation checks each entry but requires neither an order nor a non-empty group
const order: Schema = {
  type: 'array',
  description: 'buildpack groups, tried in order at detection',
  items: object({group: {type: 'array', items: groupEntry}}),
}

/**
 * The builder's store is optional (newer kpack finds buildpacks through Buildpack/ClusterBuildpack
 * refs without one: `store,omitempty`). kpack's defaulting webhook sets the kind of a Builder's
 * store (to ClusterStore) even when the Builder names no store, and its validation takes a
 * ClusterStore kind without a name as "no store" (validateObjectRef returns as soon as the kind
 * matches), so neither may be required of a Builder. kpack defaults nothing on a ClusterBuilder: a
 * name there needs its kind written too.
 */
const storeRef = (kindDefaulted: boolean): Schema => ({
  ...ref([], ['ClusterStore']),
  ...(kindDefaulted ? {} : requiredWhen('name', 'kind')),
})

const image = (required: boolean): Schema => object({image: nonEmpty}, required ? ['image'] : [])

const readyColumn = {name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
const latestImageColumn = {name: 'LatestImage', type: 'string', jsonPath: '.status.latestImage'}
const upToDateColumn = {name: 'UpToDate', type: 'string', jsonPath: '.status.conditions[?(@.type=="UpToDate")].status'}

interface CrdSpec {
  kind: string
  plural: string
  singular: string
  scope: 'Namespaced' | 'Cluster'
  shortNames?: string[]
  spec: Schema
  /** spec is required (the kinds kpi creates) */
  specRequired: boolean
  columns: Array<Record<string, string>>
  /** served as v1alpha1 too: converted by kpack's webhook, or the same object (conversion None) */
  v1alpha1: 'webhook' | 'same' | false
}

function crd(c: CrdSpec): RenderedObject {
  const schema = {
    openAPIV3Schema: object(
      {apiVersion: str, kind: str, metadata: {type: 'object'}, spec: c.spec, status: preserved},
      c.specRequired ? ['spec'] : [],
    ),
  }
  const version = (name: string, storage: boolean, s: Schema) => ({
    name,
    served: true,
    storage,
    schema: s,
    subresources: {status: {}},
    additionalPrinterColumns: c.columns,
  })
  // v1alpha1 objects are kpack's to convert; their shape differs, so they are kept as given.
  const legacy = {openAPIV3Schema: object({apiVersion: str, kind: str, metadata: {type: 'object'}, spec: preserved, status: preserved})}
  return obj('crds', 'apiextensions.k8s.io/v1', 'CustomResourceDefinition', {name: `${c.plural}.kpack.io`}, {
    spec: {
      group: 'kpack.io',
      names: {
        kind: c.kind,
        listKind: `${c.kind}List`,
        plural: c.plural,
        singular: c.singular,
        categories: ['kpack'],
        ...(c.shortNames ? {shortNames: c.shortNames} : {}),
      },
      scope: c.scope,
      versions: [...(c.v1alpha1 ? [version('v1alpha1', false, legacy)] : []), version('v1alpha2', true, schema)],
      ...(c.v1alpha1 === 'webhook'
        ? {
            conversion: {
              strategy: 'Webhook',
              webhook: {
                clientConfig: {service: {name: 'kpack-webhook', namespace: KPACK_NAMESPACE, path: '/convert', port: 443}},
                conversionReviewVersions: ['v1'],
              },
            },
          }
        : {}),
    },
  })
}

const builderSpec: Record<string, Schema> = {
  tag: {type: 'string', minLength: 1, description: 'where kpack pushes the builder image it assembles'},
  order,
  additionalLabels: {type: 'object', additionalProperties: str, description: 'labels kpack adds to the builder image'},
}

/** Every kpack CRD for the pinned kpack version, in a stable order. */
export function kpackCrds(f: KpackFeatures): RenderedObject[] {
  const lifecycleRef: Record<string, Schema> = f.clusterLifecycle ? {lifecycle: ref(['name'], ['ClusterLifecycle'])} : {}
  const out: RenderedObject[] = [
    crd({
      kind: 'Image', plural: 'images', singular: 'image', scope: 'Namespaced',
      shortNames: ['cnbimage', 'cnbimages', 'img', 'imgs'],
      spec: object(
        {
          tag: nonEmpty,
          additionalTags: {type: 'array', items: str},
          builder: ref([], ['Builder', 'ClusterBuilder']),
          serviceAccountName: str,
          source: preserved,
          cache: preserved,
          build: preserved,
          successBuildHistoryLimit: {type: 'integer', format: 'int64'},
          failedBuildHistoryLimit: {type: 'integer', format: 'int64'},
          imageTaggingStrategy: {type: 'string', enum: ['None', 'BuildNumber']},
          projectDescriptorPath: str,
          defaultProcess: str,
        },
        ['tag'],
        {'x-kubernetes-preserve-unknown-fields': true},
      ),
      specRequired: true,
      columns: [latestImageColumn, readyColumn],
      v1alpha1: 'webhook',
    }),
    crd({
      kind: 'Build', plural: 'builds', singular: 'build', scope: 'Namespaced',
      shortNames: ['cnbbuild', 'cnbbuilds', 'bld', 'blds'],
      spec: object(
        {
          tags: {type: 'array', items: str},
          builder: preserved,
          serviceAccountName: str,
          source: preserved,
        },
        [],
        {'x-kubernetes-preserve-unknown-fields': true},
      ),
      specRequired: false,
      columns: [
        {name: 'Image', type: 'string', jsonPath: '.status.latestImage'},
        {name: 'Succeeded', type: 'string', jsonPath: '.status.conditions[?(@.type=="Succeeded")].status'},
      ],
      v1alpha1: 'webhook',
    }),
    crd({
      kind: 'Builder', plural: 'builders', singular: 'builder', scope: 'Namespaced',
      shortNames: ['bldr', 'bldrs'],
      spec: object(
        {
          ...builderSpec,
          // kpack's defaulting webhook fills in the kinds; ClusterStack/ClusterStore are the only valid ones
          stack: ref(['name'], ['ClusterStack']),
          store: storeRef(true),
          serviceAccountName: str,
          serviceAccount: {type: 'string', description: 'deprecated spelling of serviceAccountName'},
          ...lifecycleRef,
        },
        ['tag', 'stack'],
      ),
      specRequired: true,
      columns: [latestImageColumn, readyColumn, upToDateColumn],
      v1alpha1: 'webhook',
    }),
    crd({
      kind: 'ClusterBuilder', plural: 'clusterbuilders', singular: 'clusterbuilder', scope: 'Cluster',
      shortNames: ['clstbldr', 'clstbldrs'],
      spec: object(
        {
          ...builderSpec,
          stack: ref(['kind', 'name'], ['ClusterStack']),
          store: storeRef(false),
          serviceAccountRef: ref(['name', 'namespace'], ['ServiceAccount']),
          ...lifecycleRef,
        },
        ['tag', 'stack', 'serviceAccountRef'],
      ),
      specRequired: true,
      columns: [latestImageColumn, readyColumn, upToDateColumn],
      v1alpha1: 'same',
    }),
    crd({
      kind: 'ClusterStore', plural: 'clusterstores', singular: 'clusterstore', scope: 'Cluster',
      spec: object({
        sources: {type: 'array', items: image(true)},
        serviceAccountRef: ref(['name', 'namespace'], ['ServiceAccount']),
      }, ['sources']),
      specRequired: true,
      columns: [readyColumn],
      v1alpha1: 'same',
    }),
    crd({
      kind: 'ClusterStack', plural: 'clusterstacks', singular: 'clusterstack', scope: 'Cluster',
      spec: object(
        {
          id: nonEmpty,
          buildImage: image(true),
          runImage: image(true),
          serviceAccountRef: ref(['name', 'namespace'], ['ServiceAccount']),
        },
        ['id', 'buildImage', 'runImage'],
      ),
      specRequired: true,
      columns: [readyColumn],
      v1alpha1: 'same',
    }),
    crd({
      kind: 'SourceResolver', plural: 'sourceresolvers', singular: 'sourceresolver', scope: 'Namespaced',
      spec: object({serviceAccountName: str, source: preserved}, [], {'x-kubernetes-preserve-unknown-fields': true}),
      specRequired: false,
      columns: [readyColumn],
      v1alpha1: 'webhook',
    }),
    crd({
      kind: 'Buildpack', plural: 'buildpacks', singular: 'buildpack', scope: 'Namespaced',
      shortNames: ['bp', 'bps'],
      spec: object({image: str, serviceAccountName: str}, [], {'x-kubernetes-preserve-unknown-fields': true}),
      specRequired: false,
      columns: [readyColumn],
      v1alpha1: false,
    }),
    crd({
      kind: 'ClusterBuildpack', plural: 'clusterbuildpacks', singular: 'clusterbuildpack', scope: 'Cluster',
      shortNames: ['clstbp', 'clstbps'],
      spec: object({image: str, serviceAccountRef: ref(['name', 'namespace'])}, [], {'x-kubernetes-preserve-unknown-fields': true}),
      specRequired: false,
      columns: [readyColumn],
      v1alpha1: false,
    }),
  ]
  if (f.clusterLifecycle) {
    out.push(
      crd({
        kind: 'ClusterLifecycle', plural: 'clusterlifecycles', singular: 'clusterlifecycle', scope: 'Cluster',
        spec: object(
          {image: {type: 'string', minLength: 1, description: 'the CNB lifecycle image'}, serviceAccountRef: ref(['name', 'namespace'], ['ServiceAccount'])},
          ['image'],
        ),
        specRequired: true,
        columns: [readyColumn],
        // kpack serves ClusterLifecycle as v1alpha2 only
        v1alpha1: false,
      }),
    )
  }
  return out
}

/** The CRDs whose conversion kpack's webhook serves: it writes its CA into them, and may update only those. */
export function convertedCrdNames(f: KpackFeatures): string[] {
  return kpackCrds(f)
    .filter((o) => (o.object.spec as {conversion?: {strategy?: string}}).conversion?.strategy === 'Webhook')
    .map((o) => o.object.metadata.name)
}
