"""Serving: the command line, the supervisor of worker processes, waitress's channel."""
