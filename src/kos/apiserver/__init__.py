"""The kos API server: Kubernetes REST semantics over a Store, with an indexed watch cache."""
