"""Behaving like Go where the reference's output depends on it, each concern once: JSON encoding
(json), address text (ip) and parsing (cidr), decoding rules and error wording (decode)."""
