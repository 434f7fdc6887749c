"""Request and response schemas of the HTTP API (never the storage tables)."""
