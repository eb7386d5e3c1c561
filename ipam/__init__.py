"""IPAM plugins (host-local)."""
