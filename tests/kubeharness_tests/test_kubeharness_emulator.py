"""The emulator closes kmock 0.8's gaps; checked through real clients (kubernetes, kubectl, aiohttp)."""

from __future__ import annotations

import json
import pathlib
import sys
import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from kubeharness.fixtures import *  # noqa: E402,F401,F403
from kubeharness.server import KubeServer  # noqa: E402

G, V, P = 'ampx.dev', 'v1alpha1', 'amptasks'
JSON_PATCH = 'application/json-patch+json'  # kubernetes>=35 sends merge patches to custom objects unless told


def amptask(name: str, **spec: object) -> dict:
    return {'apiVersion': f'{G}/{V}', 'kind': 'AmpTask', 'metadata': {'name': name},
            'spec': {'repo': 'acme/app', 'prompt': 'do it', **spec}}


def job_manifest(name: str, owner: dict | None = None, **extra: object) -> dict:
    md: dict = {'name': name}
    if owner is not None:
        md['ownerReferences'] = [{'apiVersion': owner['apiVersion'], 'kind': owner['kind'], 'name': owner['metadata']['name'],
                                  'uid': owner['metadata']['uid'], 'controller': True, 'blockOwnerDeletion': True}]
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': md,
            'spec': {'backoffLimit': 0, 'template': {'spec': {'restartPolicy': 'Never', 'containers': [
                {'name': 'main', 'image': 'ampx:dev', 'command': ['true'], 'env': [{'name': 'A', 'value': '1'}]}]}}, **extra}}


@pytest.fixture
def co(kube_api_client):
    return client.CustomObjectsApi(kube_api_client)


@pytest.fixture
def batch(kube_api_client):
    return client.BatchV1Api(kube_api_client)


@pytest.fixture
def core(kube_api_client):
    return client.CoreV1Api(kube_api_client)


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


# --- metadata: uid, creationTimestamp, generation, resourceVersion, generateName, 409/404


def test_server_assigned_metadata_and_errors(co, batch):
    created = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t1'))
    md = created['metadata']
    assert len(md['uid']) == 36 and md['generation'] == 1 and md['namespace'] == 'default'
    assert md['creationTimestamp'].endswith('Z') and int(md['resourceVersion']) > 0
    assert created['spec']['maxAttempts'] == 3 and created['spec']['agent'] == 'amp'  # CRD defaults applied

    second = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t2'))
    assert int(second['metadata']['resourceVersion']) > int(md['resourceVersion'])
    assert second['metadata']['uid'] != md['uid']

    generated = co.create_namespaced_custom_object(G, V, 'default', P,
                                                   {**amptask(''), 'metadata': {'generateName': 'fix-'}})
    assert generated['metadata']['name'].startswith('fix-') and len(generated['metadata']['name']) == 9

    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job('default', job_manifest('j1'))
        batch.create_namespaced_job('default', job_manifest('j1'))
    assert e.value.status == 409
    assert status_of(e.value) == {
        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'code': 409,
        'reason': 'AlreadyExists', 'message': 'jobs.batch "j1" already exists',
        'details': {'name': 'j1', 'group': 'batch', 'kind': 'jobs'},
    }
    with pytest.raises(ApiException) as e:
        co.get_namespaced_custom_object(G, V, 'default', P, 'nope')
    assert e.value.status == 404 and status_of(e.value)['reason'] == 'NotFound'
    assert status_of(e.value)['message'] == 'amptasks.ampx.dev "nope" not found'
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job('no-such-ns', job_manifest('j2'))
    assert e.value.status == 404 and status_of(e.value)['message'] == 'namespaces "no-such-ns" not found'


def test_generation_and_status_subresource(co):
    t = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t1'))
    rv0 = int(t['metadata']['resourceVersion'])

    # Status through /status: only .status changes; rv bumps; generation stays.
    s = co.patch_namespaced_custom_object_status(G, V, 'default', P, 't1', {
        'status': {'phase': 'running', 'attempts': 1}, 'spec': {'prompt': 'hacked'}, 'metadata': {'labels': {'x': 'y'}}})
    assert s['status']['phase'] == 'running' and s['spec']['prompt'] == 'do it'
    assert 'labels' not in s['metadata']
    assert s['metadata']['generation'] == 1 and int(s['metadata']['resourceVersion']) > rv0

    # The main resource ignores .status; spec changes bump the generation; metadata changes don't.
    m = co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'spec': {'prompt': 'again'}, 'status': {'phase': 'error'}})
    assert m['spec']['prompt'] == 'again' and m['status']['phase'] == 'running'
    assert m['metadata']['generation'] == 2
    m2 = co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'metadata': {'labels': {'a': 'b'}}})
    assert m2['metadata']['generation'] == 2 and m2['metadata']['labels'] == {'a': 'b'}
    assert int(m2['metadata']['resourceVersion']) > int(m['metadata']['resourceVersion'])

    # A no-op patch changes nothing, not even the resourceVersion (no watch event either).
    m3 = co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'metadata': {'labels': {'a': 'b'}}})
    assert m3['metadata']['resourceVersion'] == m2['metadata']['resourceVersion']

    # PUT to /status replaces the status only.
    current = co.get_namespaced_custom_object(G, V, 'default', P, 't1')
    current['status'] = {'phase': 'queued'}
    current['spec']['prompt'] = 'ignored'
    r = co.replace_namespaced_custom_object_status(G, V, 'default', P, 't1', current)
    assert r['status'] == {'phase': 'queued', 'attempts': 0, 'budgetStart': 0, 'followUpsSeen': 0}
    assert r['spec']['prompt'] == 'again'

    # Unknown status fields are pruned like a real structural schema does (kopf's status.kopf too).
    k = co.patch_namespaced_custom_object_status(G, V, 'default', P, 't1', {'status': {'kopf': {'progress': {}}, 'stage': 'agent'}})
    assert 'kopf' not in k['status'] and k['status']['stage'] == 'agent'


def test_merge_json_and_strategic_patches(kube_server, co, batch):
    co.create_namespaced_custom_object(G, V, 'default', P, amptask('t1', title='T', followUps=[{'message': 'a'}, {'message': 'b'}]))
    # RFC 7386: null deletes, lists are replaced whole.
    r = co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'spec': {'title': None, 'followUps': [{'message': 'c'}]}})
    assert 'title' not in r['spec'] and r['spec']['followUps'] == [{'message': 'c'}]
    # RFC 6902 JSON patch, incl. a `test` op (what kopf does with the resourceVersion).
    rv = r['metadata']['resourceVersion']
    r = co.patch_namespaced_custom_object(G, V, 'default', P, 't1', [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'add', 'path': '/spec/followUps/-', 'value': {'message': 'd'}},
        {'op': 'replace', 'path': '/spec/prompt', 'value': 'json-patched'}], _content_type=JSON_PATCH)
    assert [f['message'] for f in r['spec']['followUps']] == ['c', 'd'] and r['spec']['prompt'] == 'json-patched'
    with pytest.raises(ApiException) as e:
        co.patch_namespaced_custom_object(G, V, 'default', P, 't1', [
            {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
            {'op': 'replace', 'path': '/spec/prompt', 'value': 'stale'}], _content_type=JSON_PATCH)
    assert e.value.status == 422 and status_of(e.value)['kind'] == 'Status'
    # Strategic merge patch on builtins merges lists by their merge keys (containers/env by name).
    batch.create_namespaced_job('default', job_manifest('j1'))
    j = batch.patch_namespaced_job('j1', 'default', {'metadata': {'labels': {'l': '1'}}})
    assert j.metadata.labels['l'] == '1'
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p1'},
           'spec': {'containers': [{'name': 'a', 'image': 'x', 'env': [{'name': 'A', 'value': '1'}, {'name': 'B', 'value': '2'}]}]}}
    client.CoreV1Api(batch.api_client).create_namespaced_pod('default', pod)
    p = client.CoreV1Api(batch.api_client).patch_namespaced_pod('p1', 'default', {
        'spec': {'containers': [{'name': 'a', 'env': [{'name': 'B', 'value': '3'}]}]}})
    assert [(e.name, e.value) for e in p.spec.containers[0].env] == [('A', '1'), ('B', '3')]
    assert p.spec.containers[0].image == 'x'
    # ... which real servers refuse for custom resources.
    status, body = raw(kube_server, 'PATCH', f'/apis/{G}/{V}/namespaces/default/{P}/t1', {'spec': {'prompt': 'x'}},
                       ctype='application/strategic-merge-patch+json')
    assert status == 415 and body['reason'] == 'UnsupportedMediaType'


def raw(kube_server: KubeServer, method: str, path: str, body: object = None, *, ctype: str = 'application/json',
        headers: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(kube_server.url + path, data=data, method=method,
                                 headers={'Content-Type': ctype, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b'null')
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b'null')


def test_optimistic_concurrency(co, batch):
    t = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t1'))
    stale = t['metadata']['resourceVersion']
    co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'spec': {'prompt': 'newer'}})
    for call in (
        lambda: co.patch_namespaced_custom_object(G, V, 'default', P, 't1', {'metadata': {'resourceVersion': stale}, 'spec': {'prompt': 'x'}}),
        lambda: co.patch_namespaced_custom_object_status(G, V, 'default', P, 't1', {'metadata': {'resourceVersion': stale}, 'status': {'phase': 'running'}}),
        lambda: co.replace_namespaced_custom_object(G, V, 'default', P, 't1', t),
    ):
        with pytest.raises(ApiException) as e:
            call()
        assert e.value.status == 409
        assert status_of(e.value)['reason'] == 'Conflict'
        assert 'the object has been modified' in status_of(e.value)['message']
    fresh = co.get_namespaced_custom_object(G, V, 'default', P, 't1')
    fresh['spec']['prompt'] = 'replaced'
    assert co.replace_namespaced_custom_object(G, V, 'default', P, 't1', fresh)['spec']['prompt'] == 'replaced'


def test_crd_schema_validation(kube_server, co):
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(G, V, 'default', P, amptask('bad', maxAttempts=0))
    body = status_of(e.value)
    assert e.value.status == 422 and body['reason'] == 'Invalid'
    assert body['message'] == ('AmpTask.ampx.dev "bad" is invalid: spec.maxAttempts: Invalid value: 0: '
                               'spec.maxAttempts in body should be greater than or equal to 1')
    assert body['details']['causes'] == [{'reason': 'FieldValueInvalid', 'field': 'spec.maxAttempts',
                                          'message': 'Invalid value: 0: spec.maxAttempts in body should be greater than or equal to 1'}]
    with pytest.raises(ApiException) as e:
        co.create_namespaced_custom_object(G, V, 'default', P, {**amptask('bad'), 'spec': {'prompt': 'x', 'policy': {'mergeMethod': 'yolo'}}})
    fields = {c['field'] for c in status_of(e.value)['details']['causes']}
    assert fields == {'spec.repo', 'spec.policy.mergeMethod'}
    # nullable means what Kubernetes means; nulls in non-nullable fields are dropped.
    ok = co.create_namespaced_custom_object(G, V, 'default', P, amptask('ok', title=None, maxAttempts=None))
    assert ok['spec']['title'] is None and ok['spec']['maxAttempts'] == 3
    # Status writes are validated too.
    with pytest.raises(ApiException) as e:
        co.patch_namespaced_custom_object_status(G, V, 'default', P, 'ok', {'status': {'phase': 'dancing'}})
    assert e.value.status == 422 and 'status.phase: Unsupported value: "dancing"' in status_of(e.value)['message']
    # Unknown fields: pruned with a warning by default, rejected with fieldValidation=Strict.
    status, body = raw(kube_server, 'POST', f'/apis/{G}/{V}/namespaces/default/{P}?fieldValidation=Strict',
                       amptask('strict', junk=1))
    assert status == 400 and body['message'] == 'strict decoding error: unknown field "spec.junk"'


def test_list_kinds_and_selectors(kube_server, co, batch):
    for name, labels in [('a', {'app': 'x', 'tier': 'web'}), ('b', {'app': 'y', 'tier': 'web'}), ('c', {'app': 'x'})]:
        co.create_namespaced_custom_object(G, V, 'default', P, {**amptask(name), 'metadata': {'name': name, 'labels': labels}})
    co.create_namespaced_custom_object(G, V, 'team-a', P, amptask('d'))
    listing = co.list_namespaced_custom_object(G, V, 'default', P)
    assert listing['kind'] == 'AmpTaskList' and listing['apiVersion'] == 'ampx.dev/v1alpha1'
    assert listing['metadata']['resourceVersion'] == kube_server.emulator.resource_version

    def names(selector: str = '', fields: str = '', ns: str | None = 'default') -> list[str]:
        if ns is None:
            items = co.list_cluster_custom_object(G, V, P, label_selector=selector, field_selector=fields)['items']
        else:
            items = co.list_namespaced_custom_object(G, V, ns, P, label_selector=selector, field_selector=fields)['items']
        return sorted(i['metadata']['name'] for i in items)

    assert names() == ['a', 'b', 'c'] and names(ns=None) == ['a', 'b', 'c', 'd']
    assert names('app=x') == ['a', 'c'] and names('app==x') == ['a', 'c'] and names('app!=x') == ['b']
    assert names('app in (x,y),tier') == ['a', 'b'] and names('app notin (y)') == ['a', 'c']
    assert names('!tier') == ['c'] and names('app=x,tier=web') == ['a']
    assert names(fields='metadata.name=b') == ['b'] and names(fields='metadata.namespace=team-a', ns=None) == ['d']
    assert names(fields='metadata.name!=b') == ['a', 'c']
    jobs = batch.list_namespaced_job('default')
    assert jobs.kind == 'JobList' and jobs.api_version == 'batch/v1' and jobs.items == []
    assert client.CoreV1Api(batch.api_client).list_namespace().kind == 'NamespaceList'


def test_watch_selectors_resource_version_and_410(kube_server, co):
    t = co.create_namespaced_custom_object(G, V, 'default', P, {**amptask('w1'), 'metadata': {'name': 'w1', 'labels': {'app': 'x'}}})
    co.create_namespaced_custom_object(G, V, 'default', P, amptask('w2'))
    rv = co.list_namespaced_custom_object(G, V, 'default', P)['metadata']['resourceVersion']

    # From a resourceVersion: nothing is replayed as ADDED, only what happened after it.
    co.patch_namespaced_custom_object(G, V, 'default', P, 'w1', {'spec': {'prompt': 'changed'}})
    co.patch_namespaced_custom_object(G, V, 'default', P, 'w2', {'spec': {'prompt': 'changed'}})
    w = watch.Watch()
    events = [(e['type'], e['object']['metadata']['name'])
              for e in w.stream(co.list_namespaced_custom_object, G, V, 'default', P,
                                resource_version=rv, label_selector='app=x', timeout_seconds=1)]
    assert events == [('MODIFIED', 'w1')]

    # Without a resourceVersion: the current state as ADDED, then live events; label transitions.
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        w = watch.Watch()
        for e in w.stream(co.list_namespaced_custom_object, G, V, 'default', P, label_selector='app=x', timeout_seconds=5):
            seen.append((e['type'], e['object']['metadata']['name']))
            if len(seen) == 4:
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    kube_server.wait_for_watch('amptasks')
    co.patch_namespaced_custom_object(G, V, 'default', P, 'w2', {'metadata': {'labels': {'app': 'x'}}})
    co.patch_namespaced_custom_object(G, V, 'default', P, 'w1', {'metadata': {'labels': {'app': 'z'}}})
    co.delete_namespaced_custom_object(G, V, 'default', P, 'w2')
    thread.join(5)
    assert seen == [('ADDED', 'w1'), ('ADDED', 'w2'), ('DELETED', 'w1'), ('DELETED', 'w2')]

    # Too old a resourceVersion: 410 Gone (Expired) as a watch ERROR event.
    kube_server.call(kube_server.emulator.compact)
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(co.list_namespaced_custom_object, G, V, 'default', P,
                                  resource_version=t['metadata']['resourceVersion'], timeout_seconds=1))
    assert e.value.status == 410 and 'Expired' in e.value.reason


def test_watch_bookmarks_and_initial_events(kube_server):
    import urllib.request
    kube_server.emulator.bookmark_interval = 0.2
    kube_server.create(amptask('b1'), 'default')
    url = (f'{kube_server.url}/apis/{G}/{V}/namespaces/default/{P}?watch=true&allowWatchBookmarks=true'
           f'&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1')
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as resp:
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert 0.9 < time.monotonic() - started < 3  # timeoutSeconds ends the stream
    assert lines[0]['type'] == 'ADDED' and lines[0]['object']['metadata']['name'] == 'b1'
    assert lines[1]['type'] == 'BOOKMARK'
    assert lines[1]['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
    assert any(line['type'] == 'BOOKMARK' and 'annotations' not in line['object']['metadata'] for line in lines[2:])


def test_cascading_deletion(kube_server, co, batch, core):
    task = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t1'))
    job = batch.create_namespaced_job('default', job_manifest('t1-a1', owner=task))
    job_dict = kube_server.find('jobs', 'default', 't1-a1')
    assert job.metadata.owner_references[0].uid == task['metadata']['uid']
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 't1-a1-xyz', 'ownerReferences': [
        {'apiVersion': 'batch/v1', 'kind': 'Job', 'name': 't1-a1', 'uid': job_dict['metadata']['uid'], 'controller': True}]},
        'spec': {'containers': [{'name': 'main', 'image': 'x'}]}}
    core.create_namespaced_pod('default', pod)
    cm = core.create_namespaced_config_map('default', {'metadata': {'name': 'kept', 'ownerReferences': [
        {'apiVersion': f'{G}/{V}', 'kind': 'AmpTask', 'name': 't1', 'uid': task['metadata']['uid']},
        {'apiVersion': 'v1', 'kind': 'Namespace', 'name': 'default', 'uid': kube_server.find('namespaces', None, 'default')['metadata']['uid']}]}})
    assert cm.metadata.name == 'kept'

    # Background (the default for custom resources): AmpTask → Job → Pod, recursively.
    co.delete_namespaced_custom_object(G, V, 'default', P, 't1')
    assert kube_server.find('jobs', 'default', 't1-a1') is None
    assert kube_server.find('pods', 'default', 't1-a1-xyz') is None
    kept = kube_server.find('configmaps', 'default', 'kept')  # another owner is alive: only the ref goes
    assert [r['kind'] for r in kept['metadata']['ownerReferences']] == ['Namespace']

    # batch/v1 Jobs: the API server orphans pods by default (and warns); Background cascades.
    batch.create_namespaced_job('default', job_manifest('j2'))
    j2 = kube_server.find('jobs', 'default', 'j2')
    core.create_namespaced_pod('default', {**pod, 'metadata': {'name': 'j2-pod', 'ownerReferences': [
        {'apiVersion': 'batch/v1', 'kind': 'Job', 'name': 'j2', 'uid': j2['metadata']['uid']}]}})
    import urllib.request
    req = urllib.request.Request(f'{kube_server.url}/apis/batch/v1/namespaces/default/jobs/j2', method='DELETE')
    with urllib.request.urlopen(req) as resp:
        assert 'child pods are preserved by default' in resp.headers['Warning']
    orphan = kube_server.find('pods', 'default', 'j2-pod')
    assert orphan is not None and 'ownerReferences' not in orphan['metadata']

    # Foreground: dependents first, then the owner; finalizers keep objects until released.
    task = co.create_namespaced_custom_object(G, V, 'default', P, amptask('t3'))
    batch.create_namespaced_job('default', {**job_manifest('t3-a1', owner=task),
                                            'metadata': {**job_manifest('t3-a1', owner=task)['metadata'], 'finalizers': ['test/hold']}})
    co.delete_namespaced_custom_object(G, V, 'default', P, 't3', propagation_policy='Foreground')
    held_task = kube_server.find('amptasks', 'default', 't3')
    held_job = kube_server.find('jobs', 'default', 't3-a1')
    assert held_task['metadata']['finalizers'] == ['foregroundDeletion'] and held_task['metadata']['deletionTimestamp']
    assert held_job['metadata']['deletionTimestamp']
    batch.patch_namespaced_job('t3-a1', 'default', {'metadata': {'finalizers': None}})
    assert kube_server.find('jobs', 'default', 't3-a1') is None
    assert kube_server.find('amptasks', 'default', 't3') is None


def test_pod_logs(kube_server, core):
    core.create_namespaced_pod('default', {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p1'},
                                           'spec': {'containers': [{'name': 'main', 'image': 'x'}]}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log('p1', 'default')
    assert e.value.status == 400 and 'is waiting to start: ContainerCreating' in status_of(e.value)['message']
    kube_server.emulator.append_pod_log('default', 'p1', 'one\ntwo\nthree\n')
    assert core.read_namespaced_pod_log('p1', 'default') == 'one\ntwo\nthree\n'
    assert core.read_namespaced_pod_log('p1', 'default', tail_lines=2, container='main') == 'two\nthree\n'
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log('p1', 'default', container='other')
    assert e.value.status == 400 and status_of(e.value)['message'] == 'container other is not valid for pod p1'

    # follow=true streams until the pod finishes.
    lines: list[str] = []

    def follow() -> None:
        for line in watch.Watch().stream(core.read_namespaced_pod_log, 'p1', 'default', follow=True):
            lines.append(line)

    thread = threading.Thread(target=follow)
    thread.start()
    kube_server.wait_for(lambda: lines[-1:] == ['three'])
    kube_server.emulator.append_pod_log('default', 'p1', b'four\n')
    kube_server.wait_for(lambda: 'four' in lines)
    assert thread.is_alive()
    kube_server.patch_status('pods', 'default', 'p1', {'phase': 'Succeeded'})
    thread.join(5)
    assert not thread.is_alive() and lines == ['one', 'two', 'three', 'four']
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod_log('nope', 'default')
    assert e.value.status == 404 and status_of(e.value)['message'] == 'pods "nope" not found'


def test_rbac_denials(kube_server, batch):
    kube_server.emulator.deny('create', 'jobs.batch', 'default')
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job('default', job_manifest('j1'))
    assert e.value.status == 403
    assert status_of(e.value)['message'] == (
        'jobs.batch is forbidden: User "system:serviceaccount:default:ampx" cannot create resource "jobs" '
        'in API group "batch" in the namespace "default"')
    batch.create_namespaced_job('team-a', job_manifest('j1'))  # other namespaces are fine
    kube_server.create({'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'some-pod'},
                        'spec': {'containers': [{'name': 'main', 'image': 'x'}]}}, 'default')
    kube_server.emulator.deny('get', 'pods/log')
    result = kube_server.kubectl('logs', 'some-pod', check=False)
    assert result.returncode != 0
    assert 'pods "some-pod" is forbidden: User "system:serviceaccount:default:ampx" cannot get resource "pods/log"' in result.stderr
    kube_server.emulator.allow()
    batch.create_namespaced_job('default', job_manifest('j1'))


def test_discovery_and_kubectl(kube_server):
    out = kube_server.kubectl('api-resources', '--api-group=ampx.dev').stdout.split('\n')
    assert out[1].split() == ['amptasks', 'at', 'ampx.dev/v1alpha1', 'true', 'AmpTask']
    builtins = kube_server.kubectl('api-resources').stdout
    for name in ('namespaces', 'pods', 'jobs', 'secrets', 'events', 'configmaps'):
        assert f'\n{name} ' in builtins
    kube_server.create({**amptask('t1'), 'metadata': {'name': 't1'}}, 'default')
    kube_server.patch_status('at', 'default', 't1', {'phase': 'running', 'attempts': 2})
    table = kube_server.kubectl('get', 'at').stdout.splitlines()
    assert table[0].split() == ['NAME', 'PHASE', 'ATTEMPTS', 'REPO', 'BRANCH', 'PR', 'AGE']
    assert table[1].split()[:4] == ['t1', 'running', '2', 'acme/app']
    data = json.loads(kube_server.kubectl('get', 'amptasks', '-o', 'json').stdout)
    assert [i['metadata']['name'] for i in data['items']] == ['t1']
    assert kube_server.kubectl('get', 'amptask', 't1', '-o', 'jsonpath={.status.phase}').stdout == 'running'


def test_kubectl_apply_validates(kube_server):
    manifest = ('apiVersion: ampx.dev/v1alpha1\nkind: AmpTask\nmetadata: {name: k1}\n'
                'spec: {repo: acme/app, prompt: hi, maxAttempts: %s}\n')
    assert kube_server.kubectl('apply', '-f', '-', input=manifest % 2).stdout.strip() == 'amptask.ampx.dev/k1 created'
    assert kube_server.kubectl('apply', '-f', '-', input=manifest % 5).stdout.strip() == 'amptask.ampx.dev/k1 configured'
    assert kube_server.find('at', 'default', 'k1')['metadata']['generation'] == 2
    bad = kube_server.kubectl('apply', '-f', '-', input=manifest % 0, check=False)
    assert bad.returncode == 1
    assert 'spec.maxAttempts: Invalid value: 0: spec.maxAttempts in body should be greater than or equal to 1' in bad.stderr
    assert kube_server.kubectl('delete', 'at', 'k1').stdout.strip() == 'amptask.ampx.dev "k1" deleted'


def test_namespaces_and_builtin_validation(kube_server, core, batch):
    kube_server.create({**amptask('t1'), 'metadata': {'name': 't1'}}, 'team-a')
    core.delete_namespace('team-a')
    assert kube_server.find('namespaces', None, 'team-a') is None
    assert kube_server.objects('amptasks', 'team-a') == []
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job('default', {**job_manifest('x' * 64)})
    assert e.value.status == 422 and 'must be no more than 63 characters' in status_of(e.value)['message']
    bad_job = job_manifest('j1')
    del bad_job['spec']['template']['spec']['restartPolicy']
    with pytest.raises(ApiException) as e:
        batch.create_namespaced_job('default', bad_job)
    assert status_of(e.value)['message'] == ('Job.batch "j1" is invalid: spec.template.spec.restartPolicy: '
                                             'Required value: valid values: "OnFailure", "Never"')
    job = batch.create_namespaced_job('default', job_manifest('j1'))
    assert job.spec.template.metadata.labels['batch.kubernetes.io/job-name'] == 'j1'
    assert job.spec.backoff_limit == 0 and job.spec.completions == 1
    secret = core.create_namespaced_secret('default', {'metadata': {'name': 's'}, 'stringData': {'k': 'v'}})
    assert secret.data == {'k': 'dg=='} and secret.string_data is None


def test_user_reactions_take_precedence(kube_server, core):
    kube_server.emulator['get /api/v1/namespaces/default/configmaps/special'] << {'kind': 'ConfigMap', 'data': {'x': 'mocked'}}
    assert core.read_namespaced_config_map('special', 'default').data == {'x': 'mocked'}
    assert len(kube_server.requests(path_contains='configmaps/special')) == 1


def test_crds_registered_through_the_api(tmp_path):
    crd = pathlib.Path(__file__).resolve().parents[2] / 'crds' / 'amptask.yaml'
    with KubeServer(crd_path=None, workdir=tmp_path / 'k') as kube:
        assert kube.kubectl('get', 'at', check=False).returncode != 0  # unknown resource
        assert kube.kubectl('apply', '-f', str(crd)).stdout.strip() == 'customresourcedefinition.apiextensions.k8s.io/amptasks.ampx.dev created'
        established = kube.find('customresourcedefinitions', None, 'amptasks.ampx.dev')['status']['conditions']
        assert {'Established': 'True'}.items() <= {c['type']: c['status'] for c in established}.items()
        kube.create(amptask('t1'))
        assert kube.kubectl('get', 'at', '-o', 'name').stdout.strip() == 'amptask.ampx.dev/t1'
        kube.kubectl('delete', 'crd', 'amptasks.ampx.dev')
        assert kube.kubectl('get', 'at', check=False).returncode != 0
