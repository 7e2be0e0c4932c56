"""The node agent: warm workers, their deaths, and the node's shared-memory objects."""
