"""Storage: a key-value store with one global revision (etcd semantics), three backends, one contract."""
