"""Compilation of cost expressions to numeric functions and other languages."""
