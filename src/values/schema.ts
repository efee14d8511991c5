/**
 * JSON schema (draft-07, checked with ajv) of the values file that `kpi render/install/upgrade -f`
 * read. `additionalProperties: false` everywhere so a misspelt field is an error, not a silently
 * ignored setting. Checks a schema cannot express (PEM parsing, proxy URLs, docker config JSON,
 * credential alternatives, duplicates) live in checks.ts. Documented field by field in docs/values.md.
 *
 * `secret` (kpi's own annotation keyword, ignored by other validators) marks what must never be
 * kept or shown: `true` for the whole value, `'userinfo'` for the user and password of a URL.
 * Redaction (redact.ts) follows these marks.
 */

import {KPACK_FEATURE_DEFAULTS, KPACK_SCALING_FACTOR_DEFAULT} from './defaults.js'

const dnsLabel = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
export const dnsSubdomain = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
// Kubernetes resource.Quantity, as its parser accepts it
const quantity = '^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$'
const hostPort = '^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\\[[0-9a-fA-F:.]+\\](:[0-9]{1,5})?$'
const repoPath = '^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$'
// a Kubernetes label value (at most 63 characters: maxLength where it is used)
const labelValue = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'
// a label key: an optional DNS subdomain prefix and /, then a name of at most 63 characters
export const labelKey = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'

/** What each pattern means, for error messages (a regex tells a user nothing). */
export const patternMeaning: Record<string, string> = {
  [dnsLabel]: 'a DNS label: lowercase letters, digits and -, starting and ending with a letter or digit',
  [dnsSubdomain]: 'a DNS subdomain: lowercase letters, digits, - and .',
  [quantity]: 'a Kubernetes quantity such as 100m, 2 or 512Mi',
  [hostPort]: 'host[:port] without a scheme, e.g. registry.corp.example:5000',
  [repoPath]: 'a lowercase repository path such as platform/kpack',
  [labelValue]: 'a label value: letters, digits, -, _ and ., starting and ending with a letter or digit',
  [labelKey]: 'a label key: an optional DNS subdomain and / (example.com/), then at most 63 letters, digits, -, _ and ., starting and ending with a letter or digit',
}

/** The annotation keyword that marks secret fields, registered with ajv so strict mode accepts it. */
export const SECRET_KEYWORD = 'secret'

const resourceList = {
  type: 'object',
  description: 'resource name (cpu, memory, ...) to a Kubernetes quantity',
  additionalProperties: {
    type: ['string', 'number'],
    pattern: quantity,
  },
}

const workload = (what: string, replicas: number, absentResources = "kpack's own defaults") => ({
  replicas: {type: 'integer', minimum: 0, maximum: 100, default: replicas, description: `replicas of the ${what} Deployment`},
  resources: {
    type: 'object',
    additionalProperties: false,
    description: `container resources of the ${what}; ${absentResources} when absent`,
    properties: {requests: resourceList, limits: resourceList},
  },
  nodeSelector: {
    type: 'object',
    description: `node labels the ${what} pods must run on (kubernetes.io/os: linux is always set)`,
    // checked here, not first by the apiserver at install: kpi render would write them out
    propertyNames: {maxLength: 317, pattern: labelKey},
    additionalProperties: {type: 'string', maxLength: 63, pattern: labelValue},
  },
  tolerations: {
    type: 'array',
    description: `tolerations of the ${what} pods`,
    items: {
      type: 'object',
      additionalProperties: false,
      properties: {
        // a label key when given (checks.ts: empty means every key)
        key: {type: 'string'},
        operator: {enum: ['Exists', 'Equal']},
        value: {type: 'string', maxLength: 63, pattern: labelValue},
        effect: {enum: ['NoSchedule', 'PreferNoSchedule', 'NoExecute']},
        tolerationSeconds: {type: 'integer'},
      },
    },
  },
})

const failurePolicy = (what: string) => ({
  enum: ['Fail', 'Ignore'],
  default: 'Fail',
  description: `failurePolicy of the ${what} admission webhooks (Fail, as kpack ships them, or Ignore)`,
})

const builder = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'stack', 'store', 'order'],
  properties: {
    name: {type: 'string', pattern: dnsSubdomain, maxLength: 253, description: 'name of the namespaced Builder'},
    stack: {type: 'string', description: 'name of a stack of the bundle (a ClusterStack)'},
    store: {type: 'string', description: 'name of a store of the bundle (a ClusterStore)'},
    order: {
      type: 'array',
      minItems: 1,
      description: 'buildpack groups, tried in order at detection',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['group'],
        properties: {
          group: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['id'],
              properties: {
                id: {type: 'string', minLength: 1},
                version: {type: 'string'},
                optional: {type: 'boolean'},
              },
            },
          },
        },
      },
    },
  },
}

/** A registry account: username and password (or a file holding it), or a docker config. */
const credentials = {
  username: {type: 'string', minLength: 1, description: 'registry user (with password or passwordFile)'},
  password: {type: 'string', minLength: 1, secret: true, description: 'registry password or token'},
  passwordFile: {type: 'string', minLength: 1, description: 'file holding the password, relative to the values file'},
  dockerConfigJson: {type: 'string', minLength: 1, secret: true, description: 'a docker config.json document (inline) instead of username/password'},
  dockerConfigJsonFile: {type: 'string', minLength: 1, description: 'a docker config.json file, relative to the values file'},
} as const

export const valuesSchema = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://kpi.dev/schemas/values.json',
  title: 'kpi values',
  description: 'Site configuration for rendering and installing a kpack platform from a relocated lock',
  type: 'object',
  additionalProperties: false,
  required: ['registry'],
  properties: {
    registry: {
      type: 'object',
      additionalProperties: false,
      required: ['server', 'repository'],
      description: 'the registry the lock was relocated to; builders are pushed under it',
      properties: {
        server: {
          type: 'string',
          minLength: 1,
          pattern: hostPort,
          description: 'registry host[:port], without scheme',
        },
        repository: {
          type: 'string',
          minLength: 1,
          pattern: repoPath,
          description: 'repository prefix under the server every image must sit under, e.g. platform/kpack',
        },
        ...credentials,
      },
    },
    caCerts: {
      type: 'array',
      description: 'PEM CA certificates the kpack controller (and, through cert-injection-webhook, build pods) must trust',
      items: {type: 'string', minLength: 1},
    },
    proxy: {
      type: 'object',
      additionalProperties: false,
      description: 'HTTP proxy for the kpack controller (and, through cert-injection-webhook, build pods)',
      properties: {
        httpProxy: {type: 'string', minLength: 1, secret: 'userinfo', description: 'URL with scheme, e.g. http://proxy.corp:3128'},
        httpsProxy: {type: 'string', minLength: 1, secret: 'userinfo', description: 'URL with scheme, e.g. http://proxy.corp:3128'},
        noProxy: {
          type: ['string', 'array'],
          items: {type: 'string', minLength: 1},
          description: 'hosts, domains (.corp) and CIDRs reached directly: a comma-separated string or a list',
        },
      },
    },
    cluster: {
      type: 'object',
      additionalProperties: false,
      description: 'facts about the cluster, used for noProxy',
      properties: {
        domain: {type: 'string', pattern: dnsSubdomain, default: 'cluster.local', description: 'cluster DNS domain'},
        serviceCIDR: {
          type: ['string', 'array'],
          items: {type: 'string', minLength: 1},
          description: 'service CIDR(s), always added to noProxy',
        },
        podCIDR: {
          type: ['string', 'array'],
          items: {type: 'string', minLength: 1},
          description: 'pod CIDR(s), always added to noProxy',
        },
      },
    },
    teams: {
      type: 'array',
      description: 'teams (projects): each gets a namespace, a service account with the registry secret, RBAC and optional builders',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: {type: 'string', pattern: dnsLabel, maxLength: 63, description: 'team name'},
          namespace: {type: 'string', pattern: dnsLabel, maxLength: 63, description: 'namespace of the team (default: the name)'},
          serviceAccount: {
            type: 'string',
            pattern: dnsSubdomain,
            maxLength: 253,
            default: 'kpi-builds',
            description: 'service account for Images and Builders in the namespace',
          },
          subjects: {
            type: 'array',
            description: 'users, groups and service accounts of the team (RBAC subjects)',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['kind', 'name'],
              properties: {
                kind: {enum: ['User', 'Group', 'ServiceAccount']},
                name: {type: 'string', minLength: 1},
                namespace: {type: 'string', pattern: dnsLabel},
              },
            },
          },
          builders: {type: 'array', description: 'namespaced Builders of the team', items: builder},
          registry: {
            type: 'object',
            additionalProperties: false,
            description: "the team's own account on registry.server, instead of the platform's (which can push the platform's images), and where its Builders are pushed",
            properties: {
              repository: {
                type: 'string',
                minLength: 1,
                pattern: repoPath,
                description: "repository prefix on registry.server the team's account may push to: its Builders go to <server>/<repository>/builders/<name> (default: under registry.repository)",
              },
              ...credentials,
            },
          },
        },
      },
    },
    kpack: {
      type: 'object',
      additionalProperties: false,
      description: 'the kpack Deployments and feature flags',
      properties: {
        controller: {
          type: 'object',
          additionalProperties: false,
          properties: {
            ...workload('kpack-controller', 1),
            scalingFactor: {
              type: 'integer',
              minimum: 1,
              maximum: 100,
              default: KPACK_SCALING_FACTOR_DEFAULT,
              description: "multiplies the kpack controller's workers per reconciler (2) and its API client's rate limits, for clusters with many Images and Builds (SCALING_FACTOR)",
            },
          },
        },
        webhook: {
          type: 'object',
          additionalProperties: false,
          properties: {...workload('kpack-webhook', 1), failurePolicy: failurePolicy('kpack')},
        },
        features: {
          type: 'object',
          additionalProperties: false,
          description: "kpack's feature flags (environment of the kpack controller); each is kpack's own default when absent",
          properties: {
            injectedSidecarSupport: {
              type: 'boolean',
              default: KPACK_FEATURE_DEFAULTS.injectedSidecarSupport,
              description: 'run build steps as containers that wait for injected sidecars (a service mesh such as Istio) to be ready, instead of init containers (INJECTED_SIDECAR_SUPPORT)',
            },
            priorityClasses: {
              type: 'boolean',
              default: KPACK_FEATURE_DEFAULTS.priorityClasses,
              description: 'give builds a user made (a new commit, a config change) kpack-build-high-priority and builds an operator caused (a new stack or buildpack) kpack-build-low-priority, which never preempts (ENABLE_PRIORITY_CLASSES)',
            },
            slsaAttestation: {
              type: 'boolean',
              default: KPACK_FEATURE_DEFAULTS.slsaAttestation,
              description: 'experimental in kpack: push a SLSA provenance attestation beside each built image (EXPERIMENTAL_GENERATE_SLSA_ATTESTATION)',
            },
            gitShallowClone: {
              type: 'boolean',
              default: KPACK_FEATURE_DEFAULTS.gitShallowClone,
              description: 'resolve the git source of an Image with a source.subPath by a shallow clone, so a commit that changes nothing under its subPath builds nothing (other Images are resolved as before); kpack 0.17 and later (GIT_RESOLVER_USE_SHALLOW_CLONE)',
            },
            sshTrustUnknownHosts: {
              type: 'boolean',
              default: KPACK_FEATURE_DEFAULTS.sshTrustUnknownHosts,
              description: 'trust the host key of any git server reached over ssh, as kpack does by default; false makes kpack check it against the known_hosts key of the kubernetes.io/ssh-auth Secrets of the builds\' service accounts (INSECURE_SSH_TRUST_UNKNOWN_HOSTS)',
            },
          },
        },
      },
    },
    certInjection: {
      type: 'object',
      additionalProperties: false,
      description: 'cert-injection-webhook, which gives build pods the CA certificates and the proxy (when the bundle has certInjection images)',
      properties: {
        ...workload('cert-injection-webhook', 1, 'none'),
        failurePolicy: {...failurePolicy('cert-injection-webhook'), default: 'Ignore', description: 'failurePolicy of its webhook (Ignore, as it ships, or Fail: no build pod starts while it is down)'},
      },
    },
  },
} as const
