/**
 * Teams (projects): each gets a namespace, a service account holding the registry secret (for its
 * Images and Builders), RBAC to read the platform's cluster builders and to manage kpack objects in
 * its namespace, and its namespaced Builders (from the values, or bundle builders with that namespace).
 */
import type {Builder} from '../bundle/types.js'
import {labelValue, obj} from './meta.js'
import {builderTag, hasCredentials, kpackOrder, registrySecret, registryServiceAccount} from './platform.js'
import type {RbacSubject, RegistryValues, TeamValues, Values} from '../values/types.js'
import type {RenderedObject} from './types.js'

export const TEAM_SECRET = 'kpi-registry-credentials'
export const TEAM_ROLE = 'kpi-team-builds'
export const TEAM_CLUSTER_ROLE = 'kpi-team-cluster-builders'
export const TEAM_LABEL = 'kpi.dev/team'

const rbacApi = 'rbac.authorization.k8s.io/v1'

export function teamRoles(clusterLifecycle: boolean): RenderedObject[] {
  return [
    obj('teams', rbacApi, 'ClusterRole', {name: TEAM_CLUSTER_ROLE}, {
      rules: [
        {
          apiGroups: ['kpack.io'],
          resources: ['clusterbuilders', 'clusterbuildpacks', 'clusterstacks', 'clusterstores', ...(clusterLifecycle ? ['clusterlifecycles'] : [])],
          verbs: ['get', 'list', 'watch'],
        },
      ],
    }),
    // bound per namespace with a RoleBinding, so it grants nothing outside the team's namespace
    obj('teams', rbacApi, 'ClusterRole', {name: TEAM_ROLE}, {
      rules: [
        {
          apiGroups: ['kpack.io'],
          resources: ['images', 'builds', 'builders', 'sourceresolvers', 'buildpacks'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
        {apiGroups: ['kpack.io'], resources: ['images/status', 'builds/status', 'builders/status', 'sourceresolvers/status'], verbs: ['get']},
        // kp build logs reads the build pods' logs
        {apiGroups: [''], resources: ['pods', 'pods/log'], verbs: ['get', 'list', 'watch']},
        // git and registry credentials for the team's own images
        {apiGroups: [''], resources: ['secrets', 'serviceaccounts'], verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete']},
      ],
    }),
  ]
}

const subject = (s: RbacSubject) =>
  s.kind === 'ServiceAccount' ? {kind: s.kind, name: s.name, namespace: s.namespace} : {kind: s.kind, name: s.name, apiGroup: 'rbac.authorization.k8s.io'}

/**
 * The account a team's builds pull and push with: its own when the values give one (on the
 * platform's server), else the platform's, which can push the platform's own images.
 */
export function teamAccount(team: TeamValues, platform: RegistryValues): RegistryValues {
  const own = team.registry
  if (!hasOwnAccount(team)) return platform
  return {server: platform.server, repository: own!.repository ?? platform.repository, username: own!.username, password: own!.password, dockerConfigJson: own!.dockerConfigJson}
}

/** The values give the team credentials of its own (a repository alone is not an account). */
export const hasOwnAccount = (team: TeamValues): boolean => !!team.registry && hasCredentials(team.registry)

/** A team Builder's tag: under the team's own repository when it has one, else under the platform's, by namespace. */
export function teamBuilderTag(team: TeamValues, platform: RegistryValues, name: string): string {
  const repo = team.registry?.repository
  return repo ? builderTag({server: platform.server, repository: repo}, name) : builderTag(platform, name, team.namespace)
}

/** Objects of one team; `bundleBuilders` are the bundle's builders placed in its namespace. */
export function teamObjects(team: TeamValues, values: Values, bundleBuilders: Builder[]): RenderedObject[] {
  const ns = team.namespace
  const labels = {[TEAM_LABEL]: labelValue(team.name)}
  const secret = registrySecret('teams', TEAM_SECRET, ns, teamAccount(team, values.registry))
  if (secret) secret.object.metadata.labels[TEAM_LABEL] = labels[TEAM_LABEL]
  const sa = registryServiceAccount('teams', team.serviceAccount, ns, secret ? TEAM_SECRET : undefined)
  sa.object.metadata.labels[TEAM_LABEL] = labels[TEAM_LABEL]
  // the team's people and robots, not its build service account: build pods run as that account,
  // with its token, the buildpacks' and the app's build scripts (code from the app's repository):
  // bound here, any of them could read and rewrite every Secret of the namespace. kpack's controller
  // reads the account's secrets with its own RBAC; the account itself needs none.
  const subjects = team.subjects.map(subject)
  const builders = [
    ...team.builders.map((b) => ({...b, namespace: ns})),
    ...bundleBuilders,
  ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  return [
    obj('teams', 'v1', 'Namespace', {name: ns, labels}),
    ...(secret ? [secret] : []),
    sa,
    obj('teams', rbacApi, 'RoleBinding', {name: TEAM_ROLE, namespace: ns, labels}, {
      subjects,
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: TEAM_ROLE},
    }),
    obj('teams', rbacApi, 'ClusterRoleBinding', {name: `${TEAM_CLUSTER_ROLE}-${team.name}`, labels}, {
      subjects,
      roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: TEAM_CLUSTER_ROLE},
    }),
    ...builders.map((b) =>
      obj('teams', 'kpack.io/v1alpha2', 'Builder', {name: b.name, namespace: ns, labels}, {
        spec: {
          tag: teamBuilderTag(team, values.registry, b.name),
          stack: {kind: 'ClusterStack', name: b.stack},
          store: {kind: 'ClusterStore', name: b.store},
          order: kpackOrder(b.order),
          serviceAccountName: team.serviceAccount,
        },
      }),
    ),
  ]
}
