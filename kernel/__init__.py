"""The shared kernel every app builds on: errors, the caller type, memory-only answering, the security
epoch, REST and ASGI plumbing. It imports no app."""
