"""Backstop's workflows on a Temporal cluster (``runworkflows --engine temporal``).

``workflow`` orchestrates (Temporal's sandbox), ``activities`` call the platforms and write
the Mutation Log, ``dispatch`` hands runnable runs to Temporal, ``worker`` is the process.
"""
