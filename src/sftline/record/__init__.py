"""The project record: SQLAlchemy schema, migrations, the object store, atomic writes."""
