"""The shared kernel every app builds on: errors, the caller type, memory-only answering, targeted cache
invalidation, REST and ASGI plumbing. It imports no app."""
