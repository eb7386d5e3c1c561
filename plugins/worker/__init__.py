"""The warm worker: `client` (what a plugin process runs first) and `server` (the worker)."""
