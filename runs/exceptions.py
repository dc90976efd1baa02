class LeaseLost(Exception):
    """This runner no longer holds the run's lease; another runner owns it now."""
