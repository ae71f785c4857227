"""The kubelet stand-in runs multi-container pods the way the kubelet does: initContainers in
order, then the containers together; volumes per pod, mounted per container; termination
messages; the ServiceAccount token only where it is automounted; and, as root, each container
in its own PID and mount namespaces, as the pod's user without capabilities."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

import pytest

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from kubeharness.fixtures import *  # noqa: E402,F401,F403

PY = sys.executable

isolating = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                               reason="namespaces need root and util-linux's unshare")


def pod_job(name: str, spec: dict) -> dict:
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name},
            'spec': {'backoffLimit': 0, 'template': {'spec': {'restartPolicy': 'Never', **spec}}}}


def c(name: str, code: str, mounts: list | None = None, paths: tuple = (), **extra) -> dict:
    """A container running `code`; container paths reach it as arguments (P[0], P[1], ...),
    which the stand-in translates to the host directories backing its mounts."""
    return {'name': name, 'image': 'x', 'command': [PY, '-c', 'import sys; P = sys.argv[1:]\n' + code],
            'args': list(paths), 'volumeMounts': mounts or [], **extra}


def run(kube_server, kubelet, name, spec, timeout=30):
    kube_server.create(pod_job(name, spec))
    kubelet.wait_for_job(name, timeout=timeout)
    (pod,) = kube_server.objects('pods', 'default', label_selector=f'job-name={name}')
    return pod


def statuses(pod):
    st = pod['status']
    return {cs['name']: cs['state'] for cs in
            (st.get('initContainerStatuses') or []) + (st.get('containerStatuses') or [])}


def test_init_containers_first_then_containers_together_sharing_an_empty_dir(kube_server, fake_kubelet):
    ws = [{'name': 'ws', 'mountPath': '/data'}]
    spec = {'volumes': [{'name': 'ws', 'emptyDir': {}}],
            'initContainers': [c('one', "open(P[0] + '/order','a').write('one ')", ws, ('/data',)),
                               c('two', "open(P[0] + '/order','a').write('two ')", ws, ('/data',))],
            'containers': [
                c('left', "import time,os\nopen(P[0] + '/left','w').write('x')\n"
                          "t=time.time()\nwhile not os.path.exists(P[0] + '/right') and time.time()-t<10: time.sleep(.05)\n"
                          "print(open(P[0] + '/order').read(), os.path.exists(P[0] + '/right'))", ws, ('/data',)),
                c('right', "import time,os\nopen(P[0] + '/right','w').write('x')\n"
                           "t=time.time()\nwhile not os.path.exists(P[0] + '/left') and time.time()-t<10: time.sleep(.05)",
                  ws, ('/data',))]}
    pod = run(kube_server, fake_kubelet, 'order', spec)
    assert pod['status']['phase'] == 'Succeeded'
    # each container's own log; the init containers ran in order; left and right overlapped
    assert kube_server.emulator.container_log('default', pod['metadata']['name'], 'left') == 'one two  True\n'
    assert set(statuses(pod)) == {'one', 'two', 'left', 'right'}


def test_a_failed_init_container_stops_the_pod(kube_server, fake_kubelet):
    spec = {'initContainers': [c('prep', 'raise SystemExit(3)')],
            'containers': [c('main', "pass")]}
    pod = run(kube_server, fake_kubelet, 'initfail', spec)
    assert pod['status']['phase'] == 'Failed'
    st = statuses(pod)
    assert st['prep']['terminated']['exitCode'] == 3
    assert 'terminated' not in st['main']  # never started
    job = kube_server.find('batch/v1/jobs', 'default', 'initfail')
    assert any(cond['type'] == 'Failed' for cond in job['status']['conditions'])


def test_termination_message_from_the_file_at_most_4096_bytes(kube_server, fake_kubelet):
    spec = {'containers': [
        c('short', "open(P[0],'w').write('{\"outcome\": \"pushed\"}')", paths=('/dev/termination-log',)),
        c('long', "open(P[0],'w').write('y' * 10000)", paths=('/var/run/msg',),
          terminationMessagePath='/var/run/msg'),
        c('fallback', "print('last words'); raise SystemExit(2)",
          terminationMessagePolicy='FallbackToLogsOnError')]}
    pod = run(kube_server, fake_kubelet, 'msgs', spec)
    st = statuses(pod)
    assert st['short']['terminated']['message'] == '{"outcome": "pushed"}'
    assert st['long']['terminated']['message'] == 'y' * 4096
    assert st['fallback']['terminated']['message'] == 'last words\n'


def test_secret_volume_items_are_mounted_only_where_asked_and_read_only(kube_server, fake_kubelet):
    kube_server.create_secret('s', {'token': 'tok-123', 'other': 'o'})
    vols = [{'name': 'tok', 'secret': {'secretName': 's', 'items': [{'key': 'token', 'path': 'token'}]}}]
    code_with = ("import os\nprint(sorted(os.listdir(P[0])), open(P[0] + '/token').read())\n"
                 "try:\n    open(P[0] + '/new','w')\nexcept OSError as e:\n    print('read-only')")
    spec = {'volumes': vols, 'securityContext': {'runAsUser': 10001} if os.geteuid() == 0 else {},
            'containers': [
        c('with', code_with, [{'name': 'tok', 'mountPath': '/secrets'}], ('/secrets',)),
        c('without', "import os; print(os.path.exists(P[0] + '/token'))", paths=('/secrets',))]}
    pod = run(kube_server, fake_kubelet, 'secvol', spec)
    name = pod['metadata']['name']
    out = kube_server.emulator.container_log('default', name, 'with').splitlines()
    assert out[0] == "['token'] tok-123"
    if os.geteuid() == 0:  # isolated: the Secret volume is a read-only bind mount
        assert out[1:] == ['read-only']
    assert kube_server.emulator.container_log('default', name, 'without') == 'False\n'


def test_the_service_account_token_is_mounted_unless_automount_is_off(kube_server, fake_kubelet):
    code = "import os; print(os.environ.get('KUBECONFIG'))"
    on = run(kube_server, fake_kubelet, 'sa-on', {'containers': [c('c', code)]})
    off = run(kube_server, fake_kubelet, 'sa-off', {'automountServiceAccountToken': False,
                                                   'containers': [c('c', code)]})
    seen_on = kube_server.pod_log('default', on['metadata']['name']).strip()
    assert seen_on.endswith('/kubeconfig') and os.path.exists(seen_on)
    assert kube_server.pod_log('default', off['metadata']['name']).strip() == 'None'


@isolating
def test_containers_cannot_see_each_others_processes_or_volumes(kube_server, fake_kubelet):
    """As root: one container's processes and unmounted volumes are invisible to another, and
    the pod's user has no capability to undo that."""
    holder = ("import os, time\nopen(P[0] + '/key','w').write('k-secret')\n"
              "open(P[1] + '/pid','w').write(str(os.getpid()))\ntime.sleep(3)")
    snoop = ("import os, time\ntime.sleep(1)\n"
             "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
             "print('pids', len(pids), 'pid1', os.getpid() == 1)\n"
             "print('caps', open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
             "print('uid', os.getuid())\n"
             "import subprocess\n"
             "print('umount', subprocess.run(['umount', '-l', P[0]], capture_output=True).returncode)")
    spec = {'securityContext': {'runAsUser': 10001, 'runAsGroup': 10001, 'fsGroup': 10001},
            'volumes': [{'name': 'private', 'emptyDir': {}}, {'name': 'shared', 'emptyDir': {}}],
            'containers': [
                c('holder', holder, [{'name': 'private', 'mountPath': '/private'},
                                     {'name': 'shared', 'mountPath': '/shared'}], ('/private', '/shared')),
                c('snoop', snoop, [{'name': 'shared', 'mountPath': '/shared'}], ('/shared',))]}
    pod = run(kube_server, fake_kubelet, 'iso', spec)
    kubelet_pod = fake_kubelet.pods[('default', pod['metadata']['name'])]
    private_host = str(kubelet_pod.dir / 'volumes' / 'private' / 'key')
    holder_c, snoop_c = kubelet_pod.containers['holder'], kubelet_pod.containers['snoop']
    assert holder_c.isolation and snoop_c.isolation
    log = kube_server.emulator.container_log('default', pod['metadata']['name'], 'snoop').split('\n')
    assert log[0] == 'pids 1 pid1 True'  # its own PID namespace: only itself
    assert log[1] == 'caps 0000000000000000'
    # the pod's user, where some Python can run as it (else uid 0, still without capabilities)
    assert log[2] == f'uid {fake_kubelet.usable_uid(10001)}'
    assert log[3] != 'umount 0'
    # the holder's private volume exists on the host, but not in the snoop's mount namespace
    assert open(private_host).read() == 'k-secret'
    probe = ("import sys\ntry:\n    print(open(sys.argv[1]).read())\nexcept OSError as e:\n"
             "    print('denied', type(e).__name__)")
    spec2 = {'securityContext': {'runAsUser': 10001},
             'containers': [{'name': 'p', 'image': 'x', 'command': [PY, '-c', probe, private_host]}]}
    pod2 = run(kube_server, fake_kubelet, 'iso2', spec2)
    assert kube_server.pod_log('default', pod2['metadata']['name']).startswith('denied')

