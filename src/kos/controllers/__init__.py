"""Controllers run by `kos controller-manager`: the subnet validator and IPAM."""
