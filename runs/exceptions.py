class ExtensionError(Exception):
    """A team's platforms file, plug-in or workflow file stops start-up; the message names
    the file or module, the workflow and the step, and what to change."""
