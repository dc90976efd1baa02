"""What executes runs: Backstop's own runners (``runs.runner``) or a Temporal cluster
(``runs.engines.temporal``, the optional ``temporal`` extra).

Nothing is imported here: Temporal's workflow sandbox loads this package with the
workflow module, and the sandbox refuses most of the standard library.
"""
