"""Ingestion: the work a `documents` batch does.

Source -> Loader -> Chunker -> Embedder -> Sink, each a small protocol with a few
implementations, all streaming: a batch holds one document (and the chunks not yet
written) at a time, never a whole corpus.
"""
