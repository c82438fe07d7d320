"""The store's schema migrations (Alembic). ``ledger.schema`` runs them; each revision in
``versions/`` is plain DDL, written once and never edited after it lands."""
