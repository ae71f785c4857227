"""A real kopf operator (a subprocess) against the emulator, with the kubelet stand-in running its Jobs."""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from kubeharness.fixtures import *  # noqa: E402,F401,F403

HANDLERS = textwrap.dedent('''
    import json, os
    import kopf
    from kubernetes import client, config

    RUNS = os.environ['HANDLER_RUNS']

    def record(what):
        with open(RUNS, 'a') as f:
            f.write(what + '\\n')

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.scanning.disabled = True

    @kopf.on.create('ampx.dev', 'v1alpha1', 'amptasks')
    def created(name, namespace, uid, patch, **_):
        record(f'create {name}')
        config.load_kube_config()
        job = {'apiVersion': 'batch/v1', 'kind': 'Job',
               'metadata': {'name': f'{name}-a1', 'ownerReferences': [
                   {'apiVersion': 'ampx.dev/v1alpha1', 'kind': 'AmpTask', 'name': name, 'uid': uid,
                    'controller': True, 'blockOwnerDeletion': True}]},
               'spec': {'backoffLimit': 0, 'template': {'spec': {'restartPolicy': 'Never', 'containers': [
                   {'name': 'worker', 'image': 'ampx:dev', 'command': json.loads(os.environ['JOB_COMMAND'])}]}}}}
        client.BatchV1Api().create_namespaced_job(namespace, job)
        patch.status['phase'] = 'running'
        patch.status['attempts'] = 1

    @kopf.on.update('ampx.dev', 'v1alpha1', 'amptasks', field='spec')
    def updated(name, **_):
        record(f'update {name}')

    @kopf.on.delete('ampx.dev', 'v1alpha1', 'amptasks')
    def deleted(name, **_):
        record(f'delete {name}')
''')


def test_kopf_operator_end_to_end(kube_server, fake_kubelet, tmp_path):
    handlers = tmp_path / 'handlers.py'
    handlers.write_text(HANDLERS)
    runs = tmp_path / 'runs.txt'
    runs.touch()
    command = [sys.executable, '-c', 'import time; print("worker up", flush=True); time.sleep(60)']
    operator = kube_server.run_kopf(handlers, namespace='default', wait_for='amptasks',
                                    env={'HANDLER_RUNS': str(runs), 'JOB_COMMAND': json.dumps(command)})
    try:
        kube_server.create({'apiVersion': 'ampx.dev/v1alpha1', 'kind': 'AmpTask', 'metadata': {'name': 't1'},
                            'spec': {'repo': 'acme/app', 'prompt': 'go'}}, 'default')
        task = kube_server.wait_for_object('at', 'default', 't1', lambda o: (o.get('status') or {}).get('phase') == 'running')
        job = kube_server.wait_for_object('jobs', 'default', 't1-a1')
        assert job['metadata']['ownerReferences'][0]['uid'] == task['metadata']['uid']
        assert task['status']['attempts'] == 1 and task['metadata']['generation'] == 1

        # The kubelet stand-in runs the operator's Job; its pod's output reaches the log API.
        pod = fake_kubelet.wait_for_start('t1-a1')
        kube_server.wait_for(lambda: 'worker up' in kube_server.pod_log('default', pod.name))
        assert kube_server.kubectl('logs', pod.name).stdout == 'worker up\n'

        # A spec change is handled once; status patches do not re-trigger handlers.
        kube_server.patch('at', 'default', 't1', {'spec': {'prompt': 'again'}})
        kube_server.wait_for(lambda: 'update t1' in runs.read_text())
        kube_server.patch_status('at', 'default', 't1', {'phase': 'running', 'attempts': 2})

        # Deleting the AmpTask: kopf's finalizer runs the deletion handler, then the GC cascades
        # AmpTask → Job → Pod, and the kubelet stand-in kills the worker process.
        kube_server.kubectl('delete', 'amptask', 't1', '--wait=false')
        kube_server.wait_for_absence('at', 'default', 't1')
        kube_server.wait_for_absence('jobs', 'default', 't1-a1')
        assert kube_server.find('pods', 'default', pod.name) is None
        fake_kubelet.wait_for_job('t1-a1')
        assert pod.outcome == 'killed' and pod.exit_code == 143  # SIGTERM
        assert runs.read_text().split('\n') == ['create t1', 'update t1', 'delete t1', '']
        assert fake_kubelet.starts['t1-a1'] == 1
    finally:
        operator.stop()
    assert 'Traceback' not in operator.output, operator.output
