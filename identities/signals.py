"""What identities announce to the apps built on them, in the sender's transaction (handlers that raise roll
it back): the identities app knows nothing of sessions or credentials, they subscribe."""

from django.dispatch import Signal

# Sent when an identity leaves `active` (suspended or revoked), with `identity`, `actor`, `reason` and
# `client_address`; `sessions.handlers` ends its sessions.
identity_deactivated = Signal()
