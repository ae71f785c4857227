"""The concurrency queue: who starts when a slot frees, and everybody's place in line."""

from __future__ import annotations

import pytest

from ampx.core import events as ev
from ampx.core.decide import decide
from ampx.core.models import (
    AmpTaskSpec,
    AmpTaskStatus,
    AttemptOutcome,
    CiWait,
    Phase,
    Policy,
    Stage,
)
from ampx.core.queueing import Due, Held, Limits, ordinal, plan, shown_place, waiting_summary


def t(i: int) -> str:
    return f"2026-12-02T10:{i // 60:02d}:{i % 60:02d}Z"


def due(key: str, owner: str, since: int, repo: str = "acme/app", ns: str = "team") -> Due:
    return Due(key, ns, repo, owner, t(since))


def test_fairness_one_owners_500_tasks_do_not_starve_another_owners_one():
    """A has one attempt running and 500 waiting (all older than B's); B's one starts next."""
    waiting = [due(f"a{i}", "alice", i) for i in range(500)] + [due("b0", "bob", 900)]
    p = plan(Limits(per_namespace=1), [Held("team", "acme/app", "alice")], waiting)
    assert p.start == ()
    assert p.place["b0"] == 1
    assert p.place["a0"] == 2 and p.place["a499"] == 501
    # alice's attempt ends before anything else started: bob's turn, as alice just had one
    p = plan(Limits(per_namespace=1), [], waiting, turns={("team", "alice"): 1})
    assert p.start == ("b0",)
    assert p.place["a0"] == 1
    # with no turns known (a restarted runtime) the longest wait goes first, then bob
    p = plan(Limits(per_namespace=1), [], waiting)
    assert p.start == ("a0",) and p.place["b0"] == 1


def test_with_a_limit_of_one_owners_alternate():
    waiting = [due(f"a{i}", "alice", i) for i in range(5)] + [due(f"b{i}", "bob", 10 + i)
                                                              for i in range(2)]
    order, turns, n = [], {}, 0
    while waiting:
        p = plan(Limits(per_namespace=1), [], waiting, turns)
        key = p.start[0]
        order.append(key)
        n += 1
        turns[("team", "alice" if key[0] == "a" else "bob")] = n
        waiting = [d for d in waiting if d.key != key]
    assert order == ["a0", "b0", "a1", "b1", "a2", "a3", "a4"]


def test_turns_of_one_namespace_do_not_count_in_another():
    waiting = [due("a0", "alice", 1, ns="one"), due("b0", "bob", 2, ns="one")]
    p = plan(Limits(per_namespace=1), [], waiting, turns={("two", "alice"): 9})
    assert p.start == ("a0",)


def test_owners_take_turns_in_order_of_waiting_time():
    waiting = [due("a1", "alice", 1), due("a2", "alice", 2), due("a3", "alice", 3),
               due("b1", "bob", 4), due("c1", "carol", 5), due("b2", "bob", 6)]
    p = plan(Limits(per_namespace=2), [], waiting)
    assert p.start == ("a1", "b1")
    order = sorted(p.place, key=p.place.get)
    assert order == ["c1", "a2", "b2", "a3"]
    assert [p.place[k] for k in order] == [1, 2, 3, 4]


def test_without_limits_everything_starts():
    waiting = [due("a1", "alice", 2), due("b1", "bob", 1)]
    p = plan(Limits(), [Held("team", "acme/app", "x")] * 50, waiting)
    assert set(p.start) == {"a1", "b1"} and p.place == {}


def test_limits_are_per_namespace():
    waiting = [due("a1", "alice", 1, ns="one"), due("a2", "alice", 2, ns="two"),
               due("a3", "alice", 3, ns="two")]
    p = plan(Limits(per_namespace=1), [Held("one", "acme/app", "bob")], waiting)
    assert p.start == ("a2",)
    assert p.place == {"a1": 1, "a3": 1}  # one line per namespace


def test_per_repo_cap_lets_other_repositories_through():
    waiting = [due("a1", "alice", 1, repo="acme/app"), due("b1", "bob", 2, repo="acme/app"),
               due("c1", "carol", 3, repo="acme/lib")]
    p = plan(Limits(per_namespace=3, per_repo=1), [Held("team", "acme/app", "dave")], waiting)
    assert p.start == ("c1",)
    assert p.place == {"a1": 1, "b1": 2}


def test_per_repo_cap_alone():
    waiting = [due("a1", "alice", 1, repo="acme/app"), due("a2", "alice", 2, repo="acme/app"),
               due("a3", "alice", 3, repo="acme/lib")]
    p = plan(Limits(per_repo=1), [], waiting)
    assert p.start == ("a1", "a3") and p.place == {"a2": 1}


def test_namespace_limit_counts_every_holder():
    p = plan(Limits(per_namespace=2), [Held("team", "r", "a"), Held("team", "r", "b")],
             [due("c1", "carol", 1)])
    assert p.start == () and p.place == {"c1": 1}


@pytest.mark.parametrize("bad", [0, -1, "2", 1.5, True])
def test_limits_must_be_positive_whole_numbers(bad):
    with pytest.raises(ValueError, match="at least 1"):
        Limits(per_namespace=bad)


@pytest.mark.parametrize("n,text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                    (12, "12th"), (13, "13th"), (21, "21st"), (101, "101st"),
                                    (112, "112th")])
def test_ordinal(n, text):
    assert ordinal(n) == text


@pytest.mark.parametrize("place,shown", [(1, 1), (10, 10), (11, 20), (20, 20), (21, 30),
                                         (100, 100), (101, 200), (999, 1000), (1001, 2000)])
def test_places_beyond_ten_are_rounded_up_to_one_significant_digit(place, shown):
    assert shown_place(place) == shown


def test_a_start_rewrites_few_places_of_a_long_line():
    """Everybody moves up one: only the first ten and those crossing a bound show a change."""
    before = [shown_place(p) for p in range(2, 1002)]
    after = [shown_place(p) for p in range(1, 1001)]
    assert sum(a != b for a, b in zip(before, after)) < 40
    assert waiting_summary(2, 300) == "attempt 2 waiting for a free slot (within the first 300 in line)"


# --------------------------------------------------------------------------- the core's part

NOW = "2026-12-02T10:00:00Z"
SHA = "c" * 40


def spec(**kw) -> AmpTaskSpec:
    return AmpTaskSpec(repo="acme/app", prompt="do it", branch="amp/x",
                       policy=Policy(flaky_retry=False), **kw)


def test_every_attempt_records_when_it_became_due_and_a_wait_shows_its_place():
    d = decide(spec(), AmpTaskStatus(), ev.Created(), NOW)
    assert d.status.history[0].queued_at == NOW
    d = decide(spec(), d.status, ev.WaitingForSlot(1, 3), NOW)
    assert d.accepted and d.status.phase == Phase.QUEUED and d.status.queue_position == 3
    assert d.status.summary == waiting_summary(1, 3) == "attempt 1 waiting for a free slot (3rd in line)"
    again = decide(spec(), d.status, ev.WaitingForSlot(1, 3), NOW)
    assert not again.accepted, "the same place is no change (no status write)"
    d = decide(spec(), d.status, ev.SlotGranted(1), NOW)
    assert d.status.queue_position is None and d.status.phase == Phase.QUEUED
    d = decide(spec(), d.status, ev.AttemptStarted(1, job="t-a1"), NOW)
    assert d.status.phase == Phase.RUNNING


def test_a_retry_after_red_ci_queues_the_same_way_and_shows_retrying_once_granted():
    st = AmpTaskStatus()
    st = decide(spec(), st, ev.Created(), NOW).status
    st = decide(spec(), st, ev.AttemptStarted(1), NOW).status
    st = decide(spec(), st, ev.AttemptPushed(1, SHA), NOW).status
    d = decide(spec(), st, ev.CiRed(SHA, 5, "u", "boom", "sig"), "2026-12-02T10:05:00Z")
    assert d.actions and d.status.history[-1].queued_at == "2026-12-02T10:05:00Z"
    st = decide(spec(), d.status, ev.WaitingForSlot(2, 1), NOW).status
    assert st.phase == Phase.QUEUED and st.queue_position == 1
    st = decide(spec(), st, ev.SlotGranted(2), NOW).status
    assert st.phase == Phase.RETRYING and st.queue_position is None


def test_abort_of_a_waiting_task_clears_its_place():
    st = decide(spec(), AmpTaskStatus(), ev.Created(), NOW).status
    st = decide(spec(), st, ev.WaitingForSlot(1, 2), NOW).status
    st = decide(spec(), st, ev.Abort("t1"), NOW).status
    assert st.phase == Phase.ABORTED and st.queue_position is None


def test_a_started_attempt_cannot_be_sent_back_to_the_queue():
    st = decide(spec(), AmpTaskStatus(), ev.Created(), NOW).status
    st = decide(spec(), st, ev.AttemptStarted(1), NOW).status
    d = decide(spec(), st, ev.WaitingForSlot(1, 1), NOW)
    assert not d.accepted and "already started" in d.reason
    ci = AmpTaskStatus(phase=Phase.RUNNING, stage=Stage.CI, attempts=1, history=st.history,
                       ci=CiWait(sha=SHA))
    assert not decide(spec(), ci, ev.WaitingForSlot(1, 1), NOW).accepted
    done = st.model_copy(update={"reports": {}})
    done.history[-1].outcome = AttemptOutcome.PUSHED
    assert not decide(spec(), done, ev.SlotGranted(2), NOW).accepted
