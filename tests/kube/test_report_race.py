"""No window in which a finished attempt looks lost: the worker reports, then its Job ends; an
operator whose watch-fed task is older than the report (the Job's event came first) reads the
task again before judging the attempt."""

from __future__ import annotations

from ampx.engine import Engine
from ampx.kube.api import KubeApi
from ampx.kube.jobs import KubeLauncher, KubeStore, WorkerSettings, job_name
from ampx.kube.views import JobView, TaskCache, job_summary

AMPTASKS = "ampx.dev/v1alpha1/amptasks"
JOBS = "batch/v1/jobs"
NAME = "01jrace000000000000000000"


def test_a_report_newer_than_the_watch_is_read_before_the_ended_job_is_judged(kube_server, kube_api_client):
    api = KubeApi(kube_api_client)
    kube_server.create({"apiVersion": "ampx.dev/v1alpha1", "kind": "AmpTask",
                        "metadata": {"name": NAME, "labels": {"ampx.dev/owner": "a"}},
                        "spec": {"repo": "acme/api", "prompt": "x", "branch": f"amp/{NAME}"}},
                       namespace="default")
    cache, index = TaskCache(), {}
    jobs = JobView(api.get_job)
    jobs.attach(index)  # the watch-fed Job index, fed by hand below
    engine = Engine(store=KubeStore(api, {NAME: "default"}, cache),
                    launcher=KubeLauncher(api, WorkerSettings(), jobs))
    cache.put(api.get_task("default", NAME))
    task = engine.reconcile(NAME)  # attempt 1 starts: its Job is created
    assert task.status.attempts == 1 and kube_server.objects(JOBS)
    stale = cache.get(NAME)

    # the worker reports (the watch has not delivered it yet), then its Job completes
    api.patch_task_status("default", NAME, {"reports": {"1": {"outcome": "no_change",
                                                              "finishedAt": "2026-01-01T00:00:00Z"}}})
    index[NAME] = [job_summary(job_name(NAME, 1), "default", {
        "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})]
    cache._bodies[NAME] = stale  # what the watch has shown so far: no report
    assert not (cache.get(NAME)["status"].get("reports") or {})

    task = engine.reconcile(NAME)
    summaries = [h.reason or "" for h in task.status.history] + [task.status.summary or ""]
    assert not any("without a report" in s for s in summaries), summaries
    assert task.status.history[0].outcome is not None
    assert task.status.history[0].outcome.value == "no_change"
