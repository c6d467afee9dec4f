"""Django's SQLite backend, making the database file's folder on first connect (settings create nothing on import)."""
