"""The package version, in a module of its own so the server can name it without importing the
`nbinfer` facade (which would make every layer depend on the top)."""
__version__ = "0.1.0"
