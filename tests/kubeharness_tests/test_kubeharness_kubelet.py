"""The kubelet stand-in runs Jobs as local processes and reports like the kubelet + Job controller."""

from __future__ import annotations

import pathlib
import sys
import threading

from kubernetes import client, watch

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from kubeharness.fixtures import *  # noqa: E402,F401,F403

PY = pathlib.Path(sys.executable).name  # resolved via PATH (the venv's bin dir is on it)


def job(name: str, code: str, *, env: list | None = None, **spec: object) -> dict:
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name, 'labels': {'app': 'ampx'}},
            'spec': {'backoffLimit': 0, **spec, 'template': {'metadata': {'labels': {'ampx.dev/task': 't1'}}, 'spec': {
                'restartPolicy': 'Never', 'containers': [{'name': 'worker', 'image': 'ampx:dev', 'command': [PY],
                                                          'args': ['-c', code], 'env': env or []}]}}}}


def condition(job_obj: dict, type_: str) -> dict | None:
    return next((c for c in (job_obj.get('status') or {}).get('conditions') or [] if c['type'] == type_), None)


def test_job_succeeds_with_env_from_secret_and_fields(kube_server, fake_kubelet, kube_api_client):
    kube_server.create_secret('gh', {'token': 's3cr3t'})
    fake_kubelet.extra_env['AMPX_EXTRA'] = 'extra'
    code = ('import os; print("hello", os.environ["TOKEN"], os.environ["POD"], os.environ["NS"], os.environ["PLAIN"], '
            'os.environ["AMPX_EXTRA"], os.path.exists(os.environ["KUBECONFIG"]))')
    env = [{'name': 'TOKEN', 'valueFrom': {'secretKeyRef': {'name': 'gh', 'key': 'token'}}},
           {'name': 'POD', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}},
           {'name': 'NS', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.namespace'}}},
           {'name': 'PLAIN', 'value': 'v-$(NS)'}]
    batch = client.BatchV1Api(kube_api_client)
    created = batch.create_namespaced_job('default', job('j-ok', code, env=env))
    final = fake_kubelet.wait_for_job('j-ok')
    assert final['status']['succeeded'] == 1 and 'active' not in final['status']
    assert condition(final, 'Complete')['status'] == 'True'
    assert final['status']['startTime'] and final['status']['completionTime']

    pods = kube_server.objects('pods', 'default', label_selector='job-name=j-ok')
    assert len(pods) == 1
    pod = pods[0]
    assert pod['metadata']['name'].startswith('j-ok-') and len(pod['metadata']['name']) == len('j-ok-') + 5
    assert pod['metadata']['labels']['ampx.dev/task'] == 't1'
    assert pod['metadata']['labels']['batch.kubernetes.io/job-name'] == 'j-ok'
    assert pod['metadata']['ownerReferences'][0]['uid'] == created.metadata.uid
    assert pod['status']['phase'] == 'Succeeded'
    assert pod['status']['containerStatuses'][0]['state']['terminated']['exitCode'] == 0
    log = client.CoreV1Api(kube_api_client).read_namespaced_pod_log(pod['metadata']['name'], 'default')
    assert log == f"hello s3cr3t {pod['metadata']['name']} default v-default extra True\n"
    assert fake_kubelet.starts['j-ok'] == 1


def test_job_fails_with_exit_code(kube_server, fake_kubelet):
    kube_server.create(job('j-fail', 'import sys; print("boom", file=sys.stderr); sys.exit(3)'))
    final = fake_kubelet.wait_for_job('j-fail')
    assert final['status']['failed'] == 1 and 'succeeded' not in final['status']
    assert condition(final, 'Failed')['reason'] == 'BackoffLimitExceeded'
    assert condition(final, 'FailureTarget')['status'] == 'True'
    pod = kube_server.objects('pods', 'default', label_selector='job-name=j-fail')[0]
    assert pod['status']['phase'] == 'Failed'
    terminated = pod['status']['containerStatuses'][0]['state']['terminated']
    assert terminated['exitCode'] == 3 and terminated['reason'] == 'Error'
    assert kube_server.pod_log('default', pod['metadata']['name']) == 'boom\n'
    assert fake_kubelet.starts['j-fail'] == 1


def test_backoff_limit_retries_with_new_pods(kube_server, fake_kubelet):
    kube_server.create(job('j-retry', 'raise SystemExit(1)', backoffLimit=2))
    final = fake_kubelet.wait_for_job('j-retry')
    assert final['status']['failed'] == 3 and fake_kubelet.starts['j-retry'] == 3
    assert len(kube_server.objects('pods', 'default', label_selector='job-name=j-retry')) == 3


def test_deleting_a_running_job_kills_the_process(kube_server, fake_kubelet, kube_api_client):
    kube_server.create(job('j-sleep', 'import time; print("sleeping", flush=True); time.sleep(60)'))
    pod = fake_kubelet.wait_for_start('j-sleep')
    lines: list[str] = []

    def follow() -> None:
        core = client.CoreV1Api(kube_api_client)
        for line in watch.Watch().stream(core.read_namespaced_pod_log, pod.name, 'default', follow=True):
            lines.append(line)

    follower = threading.Thread(target=follow)
    follower.start()
    kube_server.wait_for(lambda: lines == ['sleeping'])
    running = kube_server.wait_for_object('pods', 'default', pod.name, lambda p: p['status']['phase'] == 'Running')
    assert running['status']['containerStatuses'][0]['state']['running']['startedAt']
    assert kube_server.find('jobs', 'default', 'j-sleep')['status']['active'] == 1
    client.BatchV1Api(kube_api_client).delete_namespaced_job('j-sleep', 'default', propagation_policy='Background')
    fake_kubelet.wait_for_job('j-sleep')
    assert pod.outcome == 'killed' and pod.exit_code == 128 + 15 and pod.proc.returncode == -15
    follower.join(5)
    assert not follower.is_alive()  # the follow stream ends when the pod is gone
    assert kube_server.find('pods', 'default', pod.name) is None


def test_orphaned_pod_keeps_running_until_deleted(kube_server, fake_kubelet):
    kube_server.create(job('j-orphan', 'import time; time.sleep(60)'))
    pod = fake_kubelet.wait_for_start('j-orphan')
    kube_server.delete('jobs', 'default', 'j-orphan', propagation_policy=None)  # Orphan: the API default for Jobs
    assert kube_server.find('pods', 'default', pod.name) is not None and pod.proc.poll() is None
    kube_server.delete('pods', 'default', pod.name)
    fake_kubelet.wait_for_job('j-orphan')
    assert pod.outcome == 'killed'


def test_sigterm_ignored_then_sigkill(kube_server, fake_kubelet):
    fake_kubelet.grace_period = 0.3
    code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print("up", flush=True); time.sleep(60)'
    kube_server.create(job('j-stubborn', code))
    pod = fake_kubelet.wait_for_start('j-stubborn')
    kube_server.wait_for(lambda: kube_server.pod_log('default', pod.name) == 'up\n')
    kube_server.delete('pods', 'default', pod.name)
    fake_kubelet.wait_for_job('j-stubborn')
    assert pod.exit_code == 128 + 9
    final = kube_server.find('jobs', 'default', 'j-stubborn')
    assert condition(final, 'Failed')['reason'] == 'BackoffLimitExceeded'  # a deleted pod counts as failed


def test_active_deadline(kube_server, fake_kubelet):
    fake_kubelet.grace_period = 0.5
    kube_server.create(job('j-slow', 'import time; time.sleep(60)', activeDeadlineSeconds=1))
    final = fake_kubelet.wait_for_job('j-slow')
    assert condition(final, 'Failed')['reason'] == 'DeadlineExceeded'
    pod = kube_server.objects('pods', 'default', label_selector='job-name=j-slow')[0]
    assert pod['status']['reason'] == 'DeadlineExceeded' and pod['status']['phase'] == 'Failed'


def test_missing_secret_is_a_config_error(kube_server, fake_kubelet):
    env = [{'name': 'TOKEN', 'valueFrom': {'secretKeyRef': {'name': 'absent', 'key': 'token'}}}]
    kube_server.create(job('j-cfg', 'print("never")', env=env, backoffLimit=6))
    pod_name = kube_server.wait_for(lambda: [p['metadata']['name'] for p in kube_server.objects('pods', 'default')
                                             if p['metadata']['labels']['job-name'] == 'j-cfg'])[0]
    waiting = kube_server.wait_for_object('pods', 'default', pod_name, lambda p: p['status'].get('containerStatuses'))
    assert waiting['status']['containerStatuses'][0]['state']['waiting'] == {
        'reason': 'CreateContainerConfigError', 'message': 'secret "absent" not found'}
    final = fake_kubelet.wait_for_job('j-cfg')
    assert condition(final, 'Failed')['status'] == 'True' and fake_kubelet.starts['j-cfg'] == 0
    logs = kube_server.kubectl('logs', pod_name, check=False)
    assert 'is waiting to start: CreateContainerConfigError' in logs.stderr

    kube_server.create_secret('partial', {'other': 'x'})
    env = [{'name': 'TOKEN', 'valueFrom': {'secretKeyRef': {'name': 'partial', 'key': 'token'}}}]
    kube_server.create(job('j-key', 'print("never")', env=env))
    final = fake_kubelet.wait_for_job('j-key')
    pod = kube_server.objects('pods', 'default', label_selector='job-name=j-key')[0]
    assert pod['status']['containerStatuses'][0]['state']['waiting']['message'] == "couldn't find key token in Secret default/partial"
    assert condition(final, 'Failed') is not None


def test_missing_executable(kube_server, fake_kubelet):
    manifest = job('j-noexe', '')
    manifest['spec']['template']['spec']['containers'][0]['command'] = ['no-such-binary-xyz']
    kube_server.create(manifest)
    final = fake_kubelet.wait_for_job('j-noexe')
    pod = kube_server.objects('pods', 'default', label_selector='job-name=j-noexe')[0]
    terminated = pod['status']['containerStatuses'][0]['state']['terminated']
    assert terminated['reason'] == 'StartError' and terminated['exitCode'] == 128
    assert condition(final, 'Failed') is not None and fake_kubelet.starts['j-noexe'] == 0
