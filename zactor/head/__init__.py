"""The head: one process, one ZeroMQ ROUTER event loop that owns the control state."""
