"""Reliability suite: real server processes under crashes, outages, contention and abuse."""
