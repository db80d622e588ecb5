"""Who a request is: kube-apiserver's authenticators, tried in its order, each a small module.

A request is given to `union.UnionAuthenticator`, which asks in turn (k8s.io/kubernetes
`pkg/kubeapiserver/authenticator/config.go`):

1. `requestheader` — the front proxy (an aggregating kube-apiserver): a client certificate directly issued by
   a CA of `--requestheader-client-ca-file` with an allowed CN; only then are `X-Remote-User`,
   `X-Remote-Group` and `X-Remote-Extra-*` believed;
2. `x509` — a client certificate directly issued by a CA of `--client-ca-file`: CN = user, O = groups;
3. `bearer` — `Authorization: Bearer <token>`, asked of `tokenfile` (`--token-auth-file`) and then of
   `webhook` (delegated TokenReview against a Kubernetes API).

The first that names a user wins; one that finds credentials it cannot accept makes the request 401 unless a
later one names a user (Kubernetes' union collects such errors). A request with no credentials at all goes on
as anonymous, which `kos.apiserver.auth.gate.Gate` lets reach only the health paths. What a certificate or a
token maps to is cached, so the common case costs a dict lookup per authenticator asked.
"""
