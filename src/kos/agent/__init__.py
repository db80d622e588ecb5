"""The connection agent: one per node, turns relevant NetworkAttachments into fabric calls."""
