"""Serving: the refresh scheduler, the exposition cache and the HTTP server."""
