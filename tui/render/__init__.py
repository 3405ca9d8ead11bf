"""Rich renderers of lab objects for the CLI: they read nothing and compute nothing, only lay out
what the engine's readers return, readable at 80 columns (`ls`, `show`, and the commands that
print a result when they finish)."""
