"""HTTP: the routes' views, routing, responses and the access log."""
