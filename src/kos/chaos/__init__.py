"""`kos chaos`: faults injected into a running `kos up --ha` under a workload, and a checker of what it saw."""
