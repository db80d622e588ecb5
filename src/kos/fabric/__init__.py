"""The network fabric: Kubernetes-free interfaces to a switch (real OVS, simulated, or logging)."""
