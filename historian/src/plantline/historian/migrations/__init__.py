"""The historian's schema migrations, numbered SQL files (see plantline.historian.schema)."""
