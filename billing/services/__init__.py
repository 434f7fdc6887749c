"""Use cases. Each takes a session, a clock and processors explicitly."""
