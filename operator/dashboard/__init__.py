"""``orchest dashboard``: a read-only web view of Pipelines, PipelineRuns and their steps, updated live.

Split like the operator: pure modules turn cluster objects into view models (``views``, ``job_views``),
HTML (``pages``), SVG (``svg``) and live-update messages (``updates``); thin modules act: ``client`` talks
to the API server, ``informers`` keep one watch per kind shared by every open page (held in ``state``),
``server`` serves the pages and ``events`` the server-sent events, with aiohttp.
"""
