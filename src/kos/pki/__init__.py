"""Certificates made for users: a CA, serving and client certificates, the PKI directory and kubeconfigs.

`kos certs init` and `kos certs issue` (kos.cli.certs) are built on it; `kos up` (issue 12 item 7) will be.
It knows nothing of Kubernetes objects — only X.509 (through the `cryptography` library, never openssl
subprocesses) and the kubeconfig file format — so it sits in the lowest layer beside kos.http, where the
apiserver, the client, the storage (etcd mTLS) and the CLI can all use it.
"""
