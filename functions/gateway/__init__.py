"""Gateway: routing, authorizer (API keys, JWT), rate limiting, CORS."""
