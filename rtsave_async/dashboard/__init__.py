"""``rtsave dashboard``: a live view of runs in the browser (aiohttp server, vendored uPlot).

:mod:`~rtsave_async.dashboard.series` keeps and downsamples the numbers,
:mod:`~rtsave_async.dashboard.data` turns a run's records into them through the
reader's cursor, :mod:`~rtsave_async.dashboard.server` serves the page and its data.
"""
