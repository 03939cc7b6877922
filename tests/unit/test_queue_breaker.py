"""The circuit breaker per node (nmdose.breaker): its states over time, driven by a clock the test advances and a
probe whose answer the test sets (the real probes, C-ECHO and GET /system, run in
tests/integration/test_queue_faults.py against a source PACS that is really down)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from nmdose.breaker import MIN_WAIT_S, Breakers, NodeDown
from nmdose.workers import Deferred


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def setup():
    clock = Clock()
    answers: list[str | None] = []
    probes: list[str] = []

    def probe(node: str) -> str | None:
        probes.append(node)
        return answers.pop(0) if answers else None

    return Breakers(probe, backoff_s=2, backoff_max_s=8, clock=clock), clock, answers, probes


def test_a_node_that_answers_its_probe_means_the_failure_was_the_jobs_own(setup):
    breakers, clock, answers, probes = setup
    assert breakers.outage("src", since=clock()) is False  # probed: it answers
    assert probes == ["src"]
    breakers.guard("src")  # closed: nothing raised, nothing probed
    assert probes == ["src"] and breakers.status() == {}


def test_an_outage_defers_every_job_until_the_probe_with_back_off_then_closes(setup):
    breakers, clock, answers, probes = setup
    answers.append("connection refused")
    assert breakers.outage("src", since=clock()) is True
    with pytest.raises(NodeDown) as down:
        breakers.guard("src")  # the next jobs wait without probing
    assert isinstance(down.value, Deferred) and "src unreachable: connection refused" in down.value.reason
    assert down.value.until >= datetime.now().astimezone() + timedelta(seconds=MIN_WAIT_S - 0.5)
    assert probes == ["src"]
    assert breakers.status()["src"]["next_probe_in_s"] == 2
    clock.t += 2  # the probe is due: this job probes, the node is still down: back-off doubles
    answers.append("still refused")
    with pytest.raises(NodeDown):
        breakers.guard("src")
    assert probes == ["src", "src"] and breakers.status()["src"]["next_probe_in_s"] == 4
    clock.t += 4
    answers.append("again")
    with pytest.raises(NodeDown):
        breakers.guard("src")
    clock.t += 8  # capped at backoff_max_s
    assert breakers.status()["src"]["next_probe_in_s"] == 0
    breakers.guard("src")  # answers: closed
    assert breakers.status() == {} and len(probes) == 4
    breakers.guard("src")
    assert len(probes) == 4  # closed: no more probes


def test_a_job_that_failed_during_an_outage_that_is_over_now_still_counts_it_as_an_outage(setup):
    breakers, clock, answers, probes = setup
    started = clock()  # a job starts, then the node goes down and comes back before the job's error is seen
    clock.t += 1
    answers.append("down")
    assert breakers.outage("src", since=clock()) is True  # another job saw the outage
    clock.t += 2
    breakers.guard("src")  # the probe answers: closed
    assert breakers.outage("src", since=started) is True  # it failed during the outage: no attempt
    clock.t += 1
    assert breakers.outage("src", since=clock()) is False  # a job started after it: its own failure


def test_each_node_has_its_own_breaker(setup):
    breakers, clock, answers, probes = setup
    answers.append("research down")
    assert breakers.outage("researchPACS", since=clock()) is True
    breakers.guard("src")  # unaffected
    with pytest.raises(NodeDown, match="researchPACS unreachable"):
        breakers.guard("researchPACS")
