"""Adapters: one module per technology, each implementing ports of :mod:`callfs_core.ports`.

Import the module you need (``callfs_adapters.sqlite_metadata``,
``callfs_adapters.localfs`` …); this package imports nothing itself so that
an optional dependency of one adapter never burdens another.
"""
