"""kos: a virtual-network control plane built on Kubernetes API machinery, with an Open vSwitch data plane."""

__version__ = "0.1.0"
