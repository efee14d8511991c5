/**
 * The namespaces kpi's platform owns, a shared leaf: render creates the first two, revision keeps
 * its records and lease in the third, and the values checks refuse all three for a team, which
 * must not import render or revision for that (values comes first in the flow).
 */
export const KPACK_NAMESPACE = 'kpack'
export const CERT_INJECTION_NS = 'cert-injection-webhook'
export const REVISION_NAMESPACE = 'kpi-system'
