"""Corpus -> token stream on disk -> batches.

- ``sources``: what a CORPUS argument names (a text file, a folder, music files, a built-in corpus).
- ``cache``: token streams as memmaps keyed by content, written atomically.
- ``text`` and ``music``: reading and tokenizing each kind into the cache.
- ``load``: ``load_corpus``, the one entry point.
- ``batches``: random windows and truncated-BPTT streams for the trainer.
"""
