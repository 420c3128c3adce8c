"""Pairs declared only through the public pair API (parity.byo); see docs/pairs.md."""
