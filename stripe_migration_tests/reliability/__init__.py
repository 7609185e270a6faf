"""Reliability suites: the migration and event processing killed, starved and faulted on purpose."""
