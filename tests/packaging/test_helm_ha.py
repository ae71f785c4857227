"""The chart with several operator replicas: leader election needs nothing more than the
declared Lease rights, a PodDisruptionBudget keeps one replica, rollouts go one at a time."""

from __future__ import annotations

import pytest

import chartlib

HA = {"replicas": 2, "persistence": {"accessModes": ["ReadWriteMany"]}}


def test_one_replica_by_default_replaced_with_recreate_and_no_budget():
    docs = chartlib.render({})
    deployment = chartlib.one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert chartlib.find(docs, "PodDisruptionBudget") == []


def test_two_replicas_roll_one_at_a_time_under_a_budget():
    docs = chartlib.render(HA)
    deployment = chartlib.one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    pdb = chartlib.one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    env = chartlib.operator_container(docs)["env"]
    assert {"name": "AMPX_OPERATOR_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in env
    assert chartlib.render({"replicas": 2, "persistence": {"enabled": False}})


def test_two_replicas_on_a_single_node_volume_are_refused():
    with pytest.raises(Exception, match="ReadWriteMany"):
        chartlib.render({"replicas": 2})
