"""Coroutine backend for executors (placeholder while the backend is written)."""
