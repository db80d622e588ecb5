"""`kos verify`: the system-wide invariants of ARCHITECTURE §8, checked from the API (and the nodes' fabrics)."""
