"""Core: errors, validation, SpaceSpec, safe I/O. Imports no torch."""
