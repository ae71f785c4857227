"""
A kubelet + Job-controller stand-in: runs the Jobs created in the emulator as local processes.

For each new batch/v1 Job it creates a Pod (``<job>-<5 chars>``, the Job's template labels plus
``job-name``/``controller-uid`` labels, an ownerReference to the Job), resolves the container's
environment (values, Secret/ConfigMap key references, field references), runs the first
container's ``command`` + ``args`` as a local process in its own process group, streams its
stdout+stderr into ``emulator.pod_logs`` and reports the outcome into the Pod's and the Job's
``/status`` the way the real controllers do. Deleting the Pod (directly, or via garbage
collection of a deleted Job/AmpTask) SIGTERMs the process group, SIGKILLs it after the grace
period. ``activeDeadlineSeconds`` and ``backoffLimit`` (retries with new pods) are honoured.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import logging
import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from ._util import now_rfc3339
from .emulator import ApiError, ResourceMeta
from .server import KubeServer

logger = logging.getLogger('kubeharness.kubelet')

PASSTHROUGH_ENV = ('LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'TMPDIR', 'PYTHONPATH', 'SSL_CERT_FILE', 'GIT_CONFIG_NOSYSTEM')


class _ConfigError(Exception):
    pass


class PodRun:
    """One pod of a Job and its local process (exposed for assertions)."""

    def __init__(self, namespace: str, name: str, uid: str, job_name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.job_name = job_name
        self.proc: subprocess.Popen[bytes] | None = None
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.exit_code: int | None = None
        self.outcome: str | None = None     # succeeded | failed | killed | deadline | config_error
        self.kill_reason: str | None = None
        self.kill_requested = threading.Event()
        self.deleted = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def __repr__(self) -> str:
        return f'<PodRun {self.namespace}/{self.name} outcome={self.outcome} exit={self.exit_code}>'


class JobRun:
    def __init__(self, job: dict[str, Any]) -> None:
        md = job['metadata']
        self.job = job
        self.namespace: str = md['namespace']
        self.name: str = md['name']
        self.uid: str = md['uid']
        self.deleted = False
        self.pods: list[PodRun] = []
        self.outcome: str | None = None
        self.thread: threading.Thread | None = None
        self.done = threading.Event()


class FakeKubelet:
    """
    Runs the emulator's Jobs as local processes (see the module doc).

    :param server: the running :class:`KubeServer`.
    :param extra_env: added to every container's environment (overrides the container's).
    :param workdir: each pod gets ``workdir/<namespace>-<pod>`` as its cwd and ``HOME``.
    :param grace_period: seconds between SIGTERM and SIGKILL; ``None`` uses the pod's
        ``terminationGracePeriodSeconds`` (30 by default, as in Kubernetes).
    :param kill_on_job_delete: also kill the process when only the Job is deleted (its pods
        orphaned). Kubernetes does not; by default only a Pod deletion kills.
    :param honor_backoff_limit: retry failed pods up to ``spec.backoffLimit`` (Kubernetes'
        default is 6!); ``False`` treats every Job as ``backoffLimit: 0``.
    :param config_error_delay: how long a pod with a bad Secret reference stays Pending with
        ``CreateContainerConfigError`` before the stand-in fails it (a real kubelet retries forever).
    :param echo: also print the processes' output to this process's stderr (debugging).
    """

    def __init__(self, server: KubeServer, extra_env: Mapping[str, str] | None = None,
                 workdir: str | os.PathLike[str] | None = None, *, grace_period: float | None = 2.0,
                 kill_on_job_delete: bool = False, honor_backoff_limit: bool = True, honor_ttl: bool = True,
                 node_name: str = 'kubeharness-node', config_error_delay: float = 0.2, echo: bool = False,
                 python_bin: str | os.PathLike[str] | None = None) -> None:
        self.server = server
        self.extra_env = dict(extra_env or {})
        #: the kubeconfig pods get (their identity); None: the harness's own
        self.pod_kubeconfig: str | os.PathLike[str] | None = None
        self.workdir = pathlib.Path(workdir) if workdir is not None else server.workdir / 'kubelet'
        self.grace_period = grace_period
        self.kill_on_job_delete = kill_on_job_delete
        self.honor_backoff_limit = honor_backoff_limit
        self.honor_ttl = honor_ttl
        self.node_name = node_name
        self.config_error_delay = config_error_delay
        self.echo = echo
        self.bin_dir = str(pathlib.Path(python_bin or sys.executable).parent)

        self.starts: collections.Counter[str] = collections.Counter()
        self.jobs: dict[str, JobRun] = {}           # by job uid
        self.pods: dict[tuple[str, str], PodRun] = {}
        self.errors: list[BaseException] = []
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        self._dispatcher: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._listener_installed = False

    # --- lifecycle

    def start(self) -> FakeKubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        existing = self.server.call(self._install)
        for job in existing:
            self._events.put(('job', job))
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name='kubeharness-kubelet', daemon=True)
        self._dispatcher.start()
        return self

    def _install(self) -> list[dict[str, Any]]:
        """In the emulator loop: subscribe and snapshot atomically."""
        emulator = self.server.emulator
        emulator.add_listener(self._listener)
        self._listener_installed = True
        return emulator.list_objects('batch/v1/jobs')

    def _listener(self, type_: str, meta: ResourceMeta, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if meta.group == 'batch' and meta.plural == 'jobs':
            if type_ == 'DELETED':
                self._events.put(('job-deleted', obj))
            else:
                self._events.put(('job', obj))
        elif meta.group == '' and meta.plural == 'pods' and type_ == 'DELETED':
            self._events.put(('pod-deleted', obj))

    def stop(self) -> None:
        self._stopping.set()
        for timer in self._timers:
            timer.cancel()
        if self._listener_installed:
            with contextlib.suppress(Exception):
                self.server.call(self.server.emulator.remove_listener, self._listener)
            self._listener_installed = False
        with self._lock:
            pods = list(self.pods.values())
            jobs = list(self.jobs.values())
        for pod in pods:
            pod.kill_reason = pod.kill_reason or 'kubelet stopped'
            pod.kill_requested.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(10)
        if self._dispatcher is not None:
            self._dispatcher.join(5)

    def __enter__(self) -> FakeKubelet:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- assertions & waiting

    def running(self) -> list[PodRun]:
        with self._lock:
            return [p for p in self.pods.values() if p.proc is not None and p.exit_code is None]

    def pods_of(self, job_name: str, namespace: str = 'default') -> list[PodRun]:
        with self._lock:
            return [p for p in self.pods.values() if p.job_name == job_name and p.namespace == namespace]

    def wait_for_start(self, job_name: str, count: int = 1, timeout: float = 10) -> PodRun:
        deadline = time.monotonic() + timeout
        while self.starts[job_name] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f'Job {job_name!r} was not started {count} time(s) within {timeout}s')
            time.sleep(0.01)
        return [p for p in self.pods.values() if p.job_name == job_name and p.proc is not None][-1]

    def wait_for_job(self, job_name: str, namespace: str = 'default', timeout: float = 15) -> dict[str, Any] | None:
        """Wait until the stand-in is done with the Job; return its final state (None if deleted)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                runs = [j for j in self.jobs.values() if j.name == job_name and j.namespace == namespace]
            if runs and runs[-1].done.is_set():
                return self.server.find('batch/v1/jobs', namespace, job_name)
            if time.monotonic() > deadline:
                raise TimeoutError(f'Job {namespace}/{job_name} did not finish within {timeout}s')
            time.sleep(0.01)

    # --- dispatching

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                kind, obj = self._events.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                self._dispatch(kind, obj)
            except Exception as e:  # pragma: no cover
                self.errors.append(e)
                logger.exception('The kubelet stand-in failed on %s', kind)

    def _dispatch(self, kind: str, obj: dict[str, Any]) -> None:
        md = obj.get('metadata') or {}
        if kind == 'job':
            uid = md.get('uid')
            with self._lock:
                if uid in self.jobs:
                    return
            if (obj.get('spec') or {}).get('suspend'):
                return
            if any(c.get('type') in ('Complete', 'Failed') and c.get('status') == 'True'
                   for c in (obj.get('status') or {}).get('conditions') or []):
                return
            run = JobRun(obj)
            with self._lock:
                self.jobs[run.uid] = run
            run.thread = threading.Thread(target=self._run_job_safely, args=(run,), name=f'job-{run.name}', daemon=True)
            run.thread.start()
        elif kind == 'job-deleted':
            with self._lock:
                run = self.jobs.get(md.get('uid'))
            if run is not None:
                run.deleted = True
                if self.kill_on_job_delete:
                    for pod in run.pods:
                        pod.kill_reason = 'job deleted'
                        pod.kill_requested.set()
        elif kind == 'pod-deleted':
            with self._lock:
                pod = self.pods.get((md.get('namespace'), md.get('name')))
            if pod is not None and pod.uid == md.get('uid'):
                pod.deleted = True
                pod.kill_reason = 'pod deleted'
                pod.kill_requested.set()

    # --- API helpers (thread-safe via the server)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.server.call(fn, *args, **kwargs)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def _patch_status(self, resource: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._call(self.server.emulator.patch_object, resource, namespace, name, {'status': status}, subresource='status')

    # --- running jobs

    def _run_job_safely(self, run: JobRun) -> None:
        try:
            self._run_job(run)
        except Exception as e:
            self.errors.append(e)
            logger.exception('The kubelet stand-in failed to run the job %s', run.name)
        finally:
            run.done.set()

    def _run_job(self, run: JobRun) -> None:
        spec = run.job.get('spec') or {}
        backoff_limit = int(spec.get('backoffLimit', 6)) if self.honor_backoff_limit else 0
        active_deadline = spec.get('activeDeadlineSeconds')
        deadline = time.monotonic() + float(active_deadline) if active_deadline is not None else None
        start_time = now_rfc3339()
        self._patch_status('batch/v1/jobs', run.namespace, run.name,
                           {'startTime': start_time, 'active': 1, 'ready': 0, 'terminating': 0,
                            'uncountedTerminatedPods': {}})
        failures = 0
        while not self._stopping.is_set():
            if run.deleted:
                run.outcome = 'deleted'
                return
            pod = self._run_pod(run, deadline)
            if run.deleted or self._stopping.is_set():
                run.outcome = 'deleted' if run.deleted else 'stopped'
                return
            if pod is None:  # the pod could not even be created (e.g. namespace gone)
                run.outcome = 'failed'
                return
            if pod.outcome == 'succeeded':
                now = now_rfc3339()
                self._patch_status('batch/v1/jobs', run.namespace, run.name, {
                    'active': None, 'ready': 0, 'succeeded': 1, 'failed': failures or None, 'completionTime': now,
                    'conditions': [{'type': 'Complete', 'status': 'True', 'lastProbeTime': now,
                                    'lastTransitionTime': now, 'reason': 'CompletionsReached',
                                    'message': 'Reached expected number of succeeded pods'}],
                })
                run.outcome = 'succeeded'
                break
            failures += 1
            if pod.outcome == 'deadline':
                self._fail_job(run, failures, 'DeadlineExceeded', 'Job was active longer than specified deadline')
                run.outcome = 'deadline'
                break
            if pod.outcome == 'config_error' or failures > backoff_limit:
                self._fail_job(run, failures, 'BackoffLimitExceeded', 'Job has reached the specified backoff limit')
                run.outcome = 'failed'
                break
            self._patch_status('batch/v1/jobs', run.namespace, run.name, {'failed': failures, 'active': 1})
        ttl = spec.get('ttlSecondsAfterFinished')
        if self.honor_ttl and ttl is not None and run.outcome in ('succeeded', 'failed', 'deadline'):
            timer = threading.Timer(float(ttl), self._ttl_delete, args=(run,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def _fail_job(self, run: JobRun, failures: int, reason: str, message: str) -> None:
        now = now_rfc3339()
        self._patch_status('batch/v1/jobs', run.namespace, run.name, {
            'active': None, 'ready': 0, 'failed': failures,
            'conditions': [
                {'type': 'FailureTarget', 'status': 'True', 'lastProbeTime': now, 'lastTransitionTime': now,
                 'reason': reason, 'message': message},
                {'type': 'Failed', 'status': 'True', 'lastProbeTime': now, 'lastTransitionTime': now,
                 'reason': reason, 'message': message},
            ],
        })

    def _ttl_delete(self, run: JobRun) -> None:
        if not self._stopping.is_set():
            with contextlib.suppress(Exception):
                self._call(self.server.emulator.delete_object, 'batch/v1/jobs', run.namespace, run.name,
                           propagation_policy='Background', preconditions={'uid': run.uid})

    def _pod_manifest(self, run: JobRun) -> dict[str, Any]:
        template = (run.job.get('spec') or {}).get('template') or {}
        tmeta = template.get('metadata') or {}
        labels = dict(tmeta.get('labels') or {})
        labels.update({'job-name': run.name, 'batch.kubernetes.io/job-name': run.name,
                       'controller-uid': run.uid, 'batch.kubernetes.io/controller-uid': run.uid})
        metadata: dict[str, Any] = {
            'generateName': f'{run.name}-', 'namespace': run.namespace, 'labels': labels,
            'ownerReferences': [{'apiVersion': 'batch/v1', 'kind': 'Job', 'name': run.name, 'uid': run.uid,
                                 'controller': True, 'blockOwnerDeletion': True}],
        }
        if tmeta.get('annotations'):
            metadata['annotations'] = dict(tmeta['annotations'])
        spec = dict(template.get('spec') or {})
        spec['nodeName'] = self.node_name
        return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': metadata, 'spec': spec}

    def _run_pod(self, run: JobRun, deadline: float | None) -> PodRun | None:
        emulator = self.server.emulator
        created = self._call(emulator.create_object, 'v1/pods', self._pod_manifest(run), run.namespace)
        if created is None:
            return None
        md = created['metadata']
        pod = PodRun(run.namespace, md['name'], md['uid'], run.name)
        with self._lock:
            self.pods[(pod.namespace, pod.name)] = pod
            run.pods.append(pod)
        container = ((created.get('spec') or {}).get('containers') or [{}])[0]
        cname = container.get('name', '')
        image = container.get('image', '')

        # Resolve the environment like the kubelet does before starting the container.
        try:
            env = self._environment(created, container)
            argv = [self._expand(a, env) for a in list(container.get('command') or []) + list(container.get('args') or [])]
            if not argv:
                raise _ConfigError('the container has neither command nor args (images are not emulated)')
        except _ConfigError as e:
            waiting = {'reason': 'CreateContainerConfigError', 'message': str(e)}
            self._patch_status('v1/pods', pod.namespace, pod.name, {
                'phase': 'Pending', 'conditions': [{'type': 'PodScheduled', 'status': 'True'}],
                'containerStatuses': [{'name': cname, 'image': image, 'ready': False, 'started': False,
                                       'restartCount': 0, 'state': {'waiting': waiting}}]})
            pod.kill_requested.wait(self.config_error_delay)
            pod.outcome = 'config_error'
            if not pod.deleted:
                self._patch_status('v1/pods', pod.namespace, pod.name, {
                    'phase': 'Failed', 'reason': 'CreateContainerConfigError', 'message': str(e)})
            return pod

        # Resolve the executable via the container's PATH, as an exec would.
        exe = argv[0]
        if '/' not in exe:
            found = shutil.which(exe, path=env.get('PATH', ''))
            if found is None:
                pod.outcome = 'failed'
                pod.exit_code = 128
                now = now_rfc3339()
                self._patch_status('v1/pods', pod.namespace, pod.name, {
                    'phase': 'Failed', 'startTime': now,
                    'containerStatuses': [{'name': cname, 'image': image, 'ready': False, 'started': False, 'restartCount': 0,
                                           'state': {'terminated': {'exitCode': 128, 'reason': 'StartError',
                                                                    'message': f'exec: "{exe}": executable file not found in $PATH',
                                                                    'startedAt': now, 'finishedAt': now}}}]})
                return pod
            argv[0] = found

        cwd = self.workdir / f'{pod.namespace}-{pod.name}'
        cwd.mkdir(parents=True, exist_ok=True)
        env.setdefault('HOME', str(cwd))
        pod.argv, pod.env = argv, env
        started = now_rfc3339()
        try:
            pod.proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            pod.outcome = 'failed'
            pod.exit_code = 128
            self._patch_status('v1/pods', pod.namespace, pod.name, {
                'phase': 'Failed', 'startTime': started,
                'containerStatuses': [{'name': cname, 'image': image, 'ready': False, 'started': False, 'restartCount': 0,
                                       'state': {'terminated': {'exitCode': 128, 'reason': 'StartError', 'message': str(e),
                                                                'startedAt': started, 'finishedAt': started}}}]})
            return pod
        with self._lock:
            self.starts[run.name] += 1
        emulator.append_pod_log(pod.namespace, pod.name, b'')
        reader = threading.Thread(target=self._pump, args=(pod,), name=f'log-{pod.name}', daemon=True)
        reader.start()
        self._patch_status('v1/pods', pod.namespace, pod.name, {
            'phase': 'Running', 'startTime': started, 'podIP': '10.244.0.10', 'hostIP': '10.0.0.1',
            'conditions': [{'type': t, 'status': 'True', 'lastTransitionTime': started}
                           for t in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
            'containerStatuses': [{'name': cname, 'image': image, 'ready': True, 'started': True, 'restartCount': 0,
                                   'containerID': f'kubeharness://{pod.proc.pid}',
                                   'state': {'running': {'startedAt': started}}}]})
        self._patch_status('batch/v1/jobs', run.namespace, run.name, {'ready': 1})

        grace = self.grace_period
        if grace is None:
            grace = float((created.get('spec') or {}).get('terminationGracePeriodSeconds', 30))
        outcome: str | None = None
        while pod.proc.poll() is None:
            if pod.kill_requested.is_set():
                outcome = 'killed'
                self._terminate(pod, grace)
                break
            if deadline is not None and time.monotonic() > deadline:
                outcome = 'deadline'
                pod.kill_reason = 'DeadlineExceeded'
                self._terminate(pod, grace)
                break
            time.sleep(0.02)
        rc = pod.proc.wait()
        reader.join(10)
        exit_code = rc if rc >= 0 else 128 - rc
        pod.exit_code = exit_code
        pod.outcome = outcome or ('succeeded' if exit_code == 0 else 'failed')
        finished = now_rfc3339()
        terminated = {'exitCode': exit_code, 'reason': 'Completed' if exit_code == 0 else 'Error',
                      'startedAt': started, 'finishedAt': finished,
                      'containerID': f'kubeharness://{pod.proc.pid}'}
        status: dict[str, Any] = {
            'phase': 'Succeeded' if pod.outcome == 'succeeded' else 'Failed',
            'conditions': [{'type': t, 'status': 'False' if t in ('Ready', 'ContainersReady') else 'True',
                            'lastTransitionTime': finished}
                           for t in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
            'containerStatuses': [{'name': cname, 'image': image, 'ready': False, 'started': False, 'restartCount': 0,
                                   'containerID': f'kubeharness://{pod.proc.pid}', 'state': {'terminated': terminated}}],
        }
        if pod.outcome == 'deadline':
            status.update({'reason': 'DeadlineExceeded', 'message': 'Pod was active on the node longer than the specified deadline'})
        if not pod.deleted:
            self._patch_status('v1/pods', pod.namespace, pod.name, status)
        return pod

    def _pump(self, pod: PodRun) -> None:
        assert pod.proc is not None and pod.proc.stdout is not None
        fd = pod.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.server.emulator.append_pod_log(pod.namespace, pod.name, chunk)
            if self.echo:
                sys.stderr.write(f'[{pod.name}] ' + chunk.decode('utf-8', 'replace'))
        pod.proc.stdout.close()

    @staticmethod
    def _terminate(pod: PodRun, grace: float) -> None:
        assert pod.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pod.proc.pid, signal.SIGTERM)
        try:
            pod.proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pod.proc.pid, signal.SIGKILL)
        # Leftovers of the group (e.g. grandchildren) are killed too, like a container's cgroup.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pod.proc.pid, signal.SIGKILL)

    # --- environment

    @staticmethod
    def _expand(text: str, env: Mapping[str, str]) -> str:
        """Kubernetes ``$(VAR)`` expansion (``$$(VAR)`` escapes)."""
        def repl(m: re.Match[str]) -> str:
            if m.group(0).startswith('$$'):
                return m.group(0)[1:]
            return env.get(m.group(1), m.group(0))
        return re.sub(r'\$?\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)', repl, str(text))

    def _environment(self, pod: dict[str, Any], container: Mapping[str, Any]) -> dict[str, str]:
        emulator = self.server.emulator
        md = pod['metadata']
        ns = md['namespace']
        env: dict[str, str] = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env['PATH'] = self.bin_dir + os.pathsep + os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')
        env['HOSTNAME'] = md['name']

        def secret_value(name: str, key: str, optional: bool) -> str | None:
            secret = self._call(emulator.find_object, 'v1/secrets', ns, name)
            if secret is None:
                if optional:
                    return None
                raise _ConfigError(f'secret "{name}" not found')
            data = secret.get('data') or {}
            if key not in data:
                if optional:
                    return None
                raise _ConfigError(f"couldn't find key {key} in Secret {ns}/{name}")
            return base64.b64decode(data[key]).decode('utf-8', 'replace')

        def configmap_value(name: str, key: str, optional: bool) -> str | None:
            cm = self._call(emulator.find_object, 'v1/configmaps', ns, name)
            if cm is None:
                if optional:
                    return None
                raise _ConfigError(f'configmap "{name}" not found')
            data = cm.get('data') or {}
            if key not in data:
                if optional:
                    return None
                raise _ConfigError(f"couldn't find key {key} in ConfigMap {ns}/{name}")
            return str(data[key])

        for source in container.get('envFrom') or []:
            prefix = source.get('prefix', '')
            if 'secretRef' in source:
                ref = source['secretRef']
                secret = self._call(emulator.find_object, 'v1/secrets', ns, ref.get('name'))
                if secret is None:
                    if not ref.get('optional'):
                        raise _ConfigError(f'secret "{ref.get("name")}" not found')
                    continue
                for k, v in (secret.get('data') or {}).items():
                    env[prefix + k] = base64.b64decode(v).decode('utf-8', 'replace')
            elif 'configMapRef' in source:
                ref = source['configMapRef']
                cm = self._call(emulator.find_object, 'v1/configmaps', ns, ref.get('name'))
                if cm is None:
                    if not ref.get('optional'):
                        raise _ConfigError(f'configmap "{ref.get("name")}" not found')
                    continue
                for k, v in (cm.get('data') or {}).items():
                    env[prefix + k] = str(v)

        for item in container.get('env') or []:
            name = item.get('name')
            if 'value' in item:
                env[name] = self._expand(item.get('value') or '', env)
                continue
            value_from = item.get('valueFrom') or {}
            value: str | None
            if 'secretKeyRef' in value_from:
                ref = value_from['secretKeyRef']
                value = secret_value(ref.get('name'), ref.get('key'), bool(ref.get('optional')))
            elif 'configMapKeyRef' in value_from:
                ref = value_from['configMapKeyRef']
                value = configmap_value(ref.get('name'), ref.get('key'), bool(ref.get('optional')))
            elif 'fieldRef' in value_from:
                path = value_from['fieldRef'].get('fieldPath', '')
                labels = md.get('labels') or {}
                annotations = md.get('annotations') or {}
                m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
                value = (
                    md.get('name') if path == 'metadata.name' else
                    md.get('namespace') if path == 'metadata.namespace' else
                    md.get('uid') if path == 'metadata.uid' else
                    (pod.get('spec') or {}).get('nodeName') if path == 'spec.nodeName' else
                    (pod.get('spec') or {}).get('serviceAccountName', 'default') if path == 'spec.serviceAccountName' else
                    '10.244.0.10' if path in ('status.podIP', 'status.podIPs') else
                    '10.0.0.1' if path in ('status.hostIP', 'status.hostIPs') else
                    (labels if m.group(1) == 'labels' else annotations).get(m.group(2), '') if m else
                    None
                )
                if value is None:
                    raise _ConfigError(f'unsupported fieldPath: {path}')
            elif 'resourceFieldRef' in value_from:
                value = '0'
            else:
                value = ''
            if value is not None:
                env[name] = value
        env.update(self.extra_env)
        # the stand-in for the pod's service-account token mount
        env['KUBECONFIG'] = str(self.pod_kubeconfig or self.server.kubeconfig)
        return env
