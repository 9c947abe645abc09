"""Small shared helpers, one job per module: seeding, threads, files, environment."""
