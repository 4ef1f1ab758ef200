"""Step caching: a rerun reuses every step that nothing changed, and says why each other step runs.

Split as the rest of the operator: ``key`` is pure (what a step's cache key is made of, how two sets of
ingredients differ, whether an index record may be reused) and ``index`` is the thin side that reads the
pipeline directory (file hashes, globs) and the index in ``.orchest/cache/``. The local runner decides
before starting a step; on a cluster ``orchest step`` decides in the step's pod, the only place that sees
the volume, and leaves a termination message the operator records as ``Cached``.
"""
