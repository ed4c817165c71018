"""Keys' answers to what lower apps announce."""

from keys.tokens import revoke_jti_for_session
from sessions.signals import jwt_session_ended


def connect() -> None:
    jwt_session_ended.connect(revoke_token_of_ended_session, dispatch_uid="chittyauth.keys.jwt_session_ended")


def revoke_token_of_ended_session(
    sender, *, jti: str, chitty_id: str, actor: str, reason: str, **kwargs
) -> None:
    revoke_jti_for_session(jti, chitty_id, actor=actor, reason=reason)
