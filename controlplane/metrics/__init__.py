"""``/metrics``: Backstop in Prometheus's text format.

Counts that live in the database (decisions, runs, steps, held actions, the runners'
queue, the Mutation Log chain, webhook deliveries) are computed from it at scrape time,
with a handful of aggregate queries: exact, and the same whichever web worker answers,
however many runners there are. Only what exists in a runner's memory (lease losses) is
a prometheus-client counter, summed across processes through ``PROMETHEUS_MULTIPROC_DIR``.
"""
