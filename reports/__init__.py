"""Markdown derivation reports rendered from the derivation traces."""
