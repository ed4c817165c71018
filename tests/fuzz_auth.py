"""Schemathesis hooks (loaded with SCHEMATHESIS_HOOKS): the fuzzer's credential. It is an administrator's API
key, and the fuzzer is free to revoke it, as it may revoke any key it finds. So on a 401 a fresh key is minted,
by the key service itself on the live server's database (DATABASE_URL), and the request is sent again."""

import os

import django
import schemathesis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chittyauth_site.settings")
django.setup()

from kernel.callers import Caller  # noqa: E402 - Django must be set up first
from keys.services import generate_api_key  # noqa: E402

FUZZER = os.environ["FUZZ_CHITTY_ID"]


@schemathesis.auth(retry_on=[401])
class FreshAdministratorKey:
    def get(self, case, context) -> str:
        return generate_api_key(
            Caller.system("fuzzing"), chitty_id=FUZZER, name="fuzzing", scopes=["*"]
        ).secret

    def set(self, case, data: str, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
