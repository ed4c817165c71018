"""What sessions announce to the apps built on them, in the sender's transaction (handlers that raise roll it
back): the sessions app knows nothing of tokens, `keys` subscribes."""

from django.dispatch import Signal

# Sent for each JWT session ended, with `jti`, `chitty_id`, `actor` and `reason`; `keys.handlers` revokes the
# token, so a JWT whose session was ended is refused everywhere, offline verifiers' revocation checks included.
jwt_session_ended = Signal()
