"""How Backstop writes a moment as text, in its documents, its API and its pages."""

# 2026-04-22T18:12:11Z: UTC to the second, as the seed's documents write it. Format only
# aware datetimes in UTC (TIME_ZONE is UTC), or the "Z" would not be true.
UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
