"""Storage: the schema, the repository, and a module per kind of database."""
