"""Storage: tables, engines, sessions and the queries the engine relies on."""
