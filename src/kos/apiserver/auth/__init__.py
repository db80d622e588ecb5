"""Who is asking and may they: the apiserver's request path is authenticate → authorize → admit.

As kube-apiserver's (k8s.io/apiserver `pkg/endpoints/filters`): every request is first given one
`UserInfo` by a union of authenticators (`authn`: front proxy, x509 client certificates, bearer
tokens, delegated TokenReview, anonymous for health paths only), then its `Attributes` (user, verb,
resource, namespace, ...) are judged by a union of authorizers (`authz`: the built-in roles of
ARCHITECTURE §10, delegated SubjectAccessReview), and a write that passes is judged once more with
the old and new object by admission (`noderestriction`: a node agent writes only its own node's
attachments' agent-owned status). `gate.Gate` is the one object the HTTP routes call.
"""
