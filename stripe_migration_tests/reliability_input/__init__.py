"""Reliability suites that attack the system with hostile input and look for leaked secrets."""
