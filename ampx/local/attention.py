"""Does a task need the supervisor? The rule, over the stored (wire) form of a task.

`ampx ls` asks it of every task to decide whether a dead supervisor must be restarted, without
building the models (1,000 finished tasks must list in a blink); the supervisor asks the same
of its models (`needs_attention` there), and a test checks the two agree.
"""

from __future__ import annotations

ACTIVE = frozenset({"queued", "running", "retrying"})


def doc_needs_attention(doc: dict) -> bool:
    spec, st = doc.get("spec") or {}, doc.get("status") or {}
    phase = st.get("phase")
    if phase is None or phase in ACTIVE or st.get("prState") == "merging":
        return True
    if spec.get("abortRequestedAt") and spec["abortRequestedAt"] != st.get("abortHandledAt"):
        return True
    if spec.get("mergeRequestedAt") and spec["mergeRequestedAt"] != st.get("mergeHandledAt"):
        return True
    return len(spec.get("followUps") or ()) > st.get("followUpsSeen", 0)
