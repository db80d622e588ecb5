"""A lean HTTP/1.1 layer on asyncio: one server protocol for calls, streams and probes, over TCP or TLS, and
one client pool.

Every kos process that listens speaks HTTP through this package: the apiserver
(calls, chunked watch streams, discovery, health, metrics) and the probes of the
controller manager, the agent and the simulated nodes (`probes`). It sits just
above `kos.util` in the import layers and knows nothing of Kubernetes: an
application is a coroutine from a `Request` to a `Reply`, a `Streaming` response
or an `Upgrade`; the errors the layer itself answers (a malformed or oversized
request) are rendered by the application's `refuse` hook, so the apiserver
answers them as Kubernetes `Status` objects and the probes as plain text.

The client side (`clientpool`'s `HTTPPool`, with `clientresponse`, `clientheaders`, `clientkeepalive` and
`lines`) is here, below both of its users, for the same reason: kos.client reaches apiservers with it, and
kos.storage's etcd JSON-gateway transport reaches etcd with it, and neither layer may import the other.
"""
