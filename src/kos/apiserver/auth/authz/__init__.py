"""May this user do this? kos' authorizers, combined as Kubernetes combines them.

`build.build_authorizer` assembles, from `AuthSettings`: the built-in roles (`policy`, ARCHITECTURE §10:
ALLOW or NO_OPINION, as RBAC answers) and, when a Kubernetes API is named, delegated SubjectAccessReview
(`webhook`: ALLOW, DENY or NO_OPINION, cached), joined by a `union.Union` (k8s.io/apiserver
`pkg/authorization/union`): the first ALLOW or DENY decides, and a request no authorizer has an opinion on is
denied by the gate.
"""
