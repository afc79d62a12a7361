"""Module state of the harness test worker (a sibling module: reset when the worker is re-imported)."""

events = []
