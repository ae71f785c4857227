"""The per-attempt Secret `<task>-a<N>`: a push token for one repository, and attempt.json.

The App key never leaves the operator. For each attempt the operator mints an installation
token restricted to the task's repository and to `contents: write` (all a clone and a push
need), and puts it with the attempt file into a Secret owned by the AmpTask. Only the pod's
prepare and publish containers mount the token. The operator deletes the Secret when the
attempt ends, and renews the token in it while a long attempt runs (installation tokens last
an hour; the kubelet refreshes mounted Secret files, and publish reads its token file when it
pushes).
"""

from __future__ import annotations

import base64
import time
from typing import Callable, Optional

from ..core.models import API_VERSION, ATTEMPT_LABEL, KIND, TASK_LABEL, AmpTask
from ..core.repo import parse_repo
from ..redact import register_secret
from .pod import ATTEMPT_KEY, TOKEN_KEY

#: what a push needs, and nothing else (no pull requests, no actions)
PUSH_PERMISSIONS = {"contents": "write"}
#: hand out a token only with at least this much life left (minted afresh otherwise)
MIN_LIFE_S = 50 * 60
#: renew the token in a running attempt's Secret when less than this remains
RENEW_BELOW_S = 20 * 60


def secret_name(task: str, number: int) -> str:
    return f"{task}-a{number}"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build_secret(task: AmpTask, number: int, token: str, attempt_json: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(task.name, number),
            "namespace": task.namespace,
            "labels": {TASK_LABEL: task.name, ATTEMPT_LABEL: str(number),
                       "app.kubernetes.io/managed-by": "ampx"},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": KIND, "name": task.name,
                "uid": task.metadata.get("uid", ""),
            }],
        },
        "data": {TOKEN_KEY: _b64(token), ATTEMPT_KEY: _b64(attempt_json)},
    }


def token_patch(token: str) -> dict:
    return {"data": {TOKEN_KEY: _b64(token)}}


class PushTokens:
    """Push tokens for attempts: minted by the operator, one repository, contents: write.

    `provider` is a TokenProvider (ampx.github.auth) built for PUSH_PERMISSIONS; `expires_at`
    tells when the token it handed out for a repository expires (None: never, a personal token).
    """

    def __init__(self, provider, clock: Callable[[], float] = time.time) -> None:
        self.provider = provider
        self.clock = clock

    @classmethod
    def from_settings(cls, gh) -> Optional["PushTokens"]:
        from ..github.auth import AppAuth, TokenAuth

        if gh.app_id and gh.private_key:
            return cls(AppAuth(gh.app_id, gh.private_key, gh.api_url,
                               permissions=PUSH_PERMISSIONS, renew_before=MIN_LIFE_S))
        if gh.token:
            return cls(TokenAuth(gh.token))
        return None

    def token(self, repo: str) -> tuple[str, Optional[float]]:
        ref = parse_repo(repo)
        token = self.provider.token_for(ref)
        register_secret(token)
        expires = getattr(self.provider, "expires_at", None)
        return token, (expires(ref) if expires else None)
