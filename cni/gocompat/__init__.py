"""Behaving like Go where the reference's output depends on it: JSON encoding, address text."""
