"""
A kubelet + Job-controller stand-in: runs the Jobs created in the emulator as local processes.

For each new batch/v1 Job it creates a Pod (``<job>-<5 chars>``, the Job's template labels plus
``job-name``/``controller-uid`` labels, an ownerReference to the Job) and runs it like the
kubelet: the ``initContainers`` one after the other (a failure fails the pod), then the
``containers`` together, each container's ``command`` + ``args`` as its own process group. It
resolves each container's environment (values, Secret/ConfigMap key references, field
references), streams each container's output into its own log (``?container=``) and the pod's,
and reports ``initContainerStatuses``/``containerStatuses`` (with ``terminated.message`` read
from ``terminationMessagePath``, at most 4096 bytes; ``FallbackToLogsOnError`` honoured) into
the Pod's and the Job's ``/status`` the way the real controllers do. Deleting the Pod (directly,
or via garbage collection of a deleted Job/AmpTask) SIGTERMs every container's process group,
SIGKILLs them after the grace period. ``activeDeadlineSeconds`` and ``backoffLimit`` (retries
with new pods) are honoured.

Volumes: each emptyDir, Secret (its keys, or only ``items``, with ``defaultMode``) and ConfigMap
volume is a host directory ``<workdir>/<ns>-<pod>/volumes/<name>``. There is no chroot, so
container paths are *translated*: a container's args, ``workingDir``, its own env values and its
``terminationMessagePath`` that equal or lie under one of its ``mountPath``s become the host
path backing that mount (harness-provided ``extra_env`` values are host paths and stay as they
are). A path inside a ``python -c`` string is not translated: pass paths as arguments. The
ServiceAccount token mount is a kubeconfig (``KUBECONFIG``), mounted unless the pod sets
``automountServiceAccountToken: false``.

Isolation (when this process is root and the container's security context sets ``runAsUser``):
each container runs in its own PID namespace (it is PID 1 there and sees only its own
processes; when it ends, everything it started ends) and its own mount namespace, where the
kubelet's directory and ``hidden_paths`` are covered by an empty tmpfs and only the container's
own volumes are bound back (read-only where the mount, or the volume kind, says so). It runs as
``runAsUser`` with no capabilities and ``no_new_privs`` (setpriv); if that uid cannot run this
harness's Python (a pyenv under a 0700 /root, say), as uid 0 without any capability instead.
Not emulated: images (commands run from the host), ``readOnlyRootFilesystem``, resource limits,
network policies.
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
import shlex
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

#: kubelet: "the message is limited to 4096 bytes" per container
MAX_TERMINATION_MESSAGE = 4096
SA_MOUNT = '/var/run/secrets/kubernetes.io/serviceaccount'

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
        self.dir: pathlib.Path | None = None
        self.containers: dict[str, ContainerRun] = {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exited(self) -> bool:
        """Every process of every container that started has ended."""
        procs = [c.proc for c in self.containers.values() if c.proc is not None] or [self.proc]
        return all(p is not None and p.poll() is not None for p in procs)

    def __repr__(self) -> str:
        return f'<PodRun {self.namespace}/{self.name} outcome={self.outcome} exit={self.exit_code}>'


class ContainerRun:
    """One container of a pod: its process, mounts and final state (exposed for assertions)."""

    def __init__(self, name: str, image: str, init: bool) -> None:
        self.name, self.image, self.init = name, image, init
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.argv: list[str] = []
        self.env: dict[str, str] = {}
        self.cwd: pathlib.Path = pathlib.Path('/')
        self.home: pathlib.Path = pathlib.Path('/')
        self.mounts: list[tuple[str, pathlib.Path, bool]] = []
        self.paths: list[tuple[str, str]] = []
        self.message_file: pathlib.Path | None = None
        self.message_policy = 'File'
        self.isolation = False
        self.uid = 0
        self.gid = 0
        self.groups: list[int] = []
        self.hidden: list[str] = []
        self.exit_code: int | None = None
        self.reason: str | None = None
        self.message: str | None = None
        self.started: str | None = None
        self.finished: str | None = None

    def host_path(self, container_path: str) -> str:
        """Where a path of this container lives on the host (its mounts translated)."""
        return FakeKubelet._translate(container_path, self.paths)

    def status(self) -> dict[str, Any]:
        """The container's entry in the pod's containerStatuses / initContainerStatuses."""
        entry: dict[str, Any] = {'name': self.name, 'image': self.image, 'restartCount': 0,
                                 'ready': False, 'started': False}
        if self.proc is not None:
            entry['containerID'] = f'kubeharness://{self.proc.pid}'
        if self.exit_code is not None:
            term = {'exitCode': self.exit_code,
                    'reason': self.reason or ('Completed' if self.exit_code == 0 else 'Error'),
                    'startedAt': self.started, 'finishedAt': self.finished}
            if self.message:
                term['message'] = self.message
            if self.proc is not None:
                term['containerID'] = f'kubeharness://{self.proc.pid}'
            entry['state'] = {'terminated': term}
        elif self.proc is not None:
            entry.update(ready=not self.init, started=True)
            entry['state'] = {'running': {'startedAt': self.started}}
        else:
            entry['state'] = {'waiting': {'reason': 'PodInitializing'}}
        return entry


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
        #: a directory beside ``workdir`` that pods may reach (not hidden): what an image would
        #: provide (``bin``: the wrappers of `_image_bin`), and what tests share with pods
        self.shared_dir = self.workdir.parent / f'{self.workdir.name}-shared'
        #: run containers that set runAsUser (when this process is root) in their own PID and
        #: mount namespaces, as that user without capabilities (see `_isolated`)
        self.isolate = True
        #: host paths no container may see (besides the kubelet's own directory): e.g. the
        #: operator's key file, which lives on another "node" in a real cluster
        self.hidden_paths: list[pathlib.Path] = []
        self._uid_ok: dict[int, tuple[str, str] | None] = {}
        self._probe_lock = threading.Lock()

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
        self.shared_dir.mkdir(parents=True, exist_ok=True)
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

    def share_with_pods(self, path: str | os.PathLike[str], *, writable: bool = False) -> None:
        """Let the pods' users reach a host path, as an image or a volume would provide it:
        every ancestor directory becomes traversable (o+x), the path readable (o+rX, or o+rwX
        with `writable`). Only needed when containers run as a non-root user (see `isolate`)."""
        target = pathlib.Path(path).resolve()
        for parent in [target, *target.parents]:
            if parent.is_dir():
                parent.chmod(parent.stat().st_mode | 0o001)
        extra = 0o007 if writable else 0o005
        for root, dirs, files in os.walk(target):
            pathlib.Path(root).chmod(pathlib.Path(root).stat().st_mode | extra)
            for f in files:
                fp = pathlib.Path(root, f)
                mode = fp.stat().st_mode
                fp.chmod(mode | (0o006 if writable else 0o004) | (0o001 if mode & 0o100 else 0))

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
        spec = created.get('spec') or {}
        pod.dir = self.workdir / f'{pod.namespace}-{pod.name}'
        init_specs = list(spec.get('initContainers') or [])
        main_specs = list(spec.get('containers') or [{}])

        # Resolve volumes, environments and commands like the kubelet does before starting.
        try:
            volumes = self._materialize_volumes(created, pod.dir)
            init = [self._container(created, c, volumes, pod, init=True) for c in init_specs]
            main = [self._container(created, c, volumes, pod, init=False) for c in main_specs]
        except _ConfigError as e:
            waiting = {'reason': 'CreateContainerConfigError', 'message': str(e)}
            first = (init_specs or main_specs)[0]
            key = 'initContainerStatuses' if init_specs else 'containerStatuses'
            self._patch_status('v1/pods', pod.namespace, pod.name, {
                'phase': 'Pending', 'conditions': [{'type': 'PodScheduled', 'status': 'True'}],
                key: [{'name': first.get('name', ''), 'image': first.get('image', ''), 'ready': False,
                       'started': False, 'restartCount': 0, 'state': {'waiting': waiting}}]})
            pod.kill_requested.wait(self.config_error_delay)
            pod.outcome = 'config_error'
            if not pod.deleted:
                self._patch_status('v1/pods', pod.namespace, pod.name, {
                    'phase': 'Failed', 'reason': 'CreateContainerConfigError', 'message': str(e)})
            return pod
        pod.containers = {c.name: c for c in init + main}
        grace = self.grace_period
        if grace is None:
            grace = float(spec.get('terminationGracePeriodSeconds', 30))
        started = now_rfc3339()
        self._patch_status('v1/pods', pod.namespace, pod.name, {
            'phase': 'Pending', 'startTime': started, 'podIP': '10.244.0.10', 'hostIP': '10.0.0.1',
            'initContainerStatuses': [c.status() for c in init] or None,
            'containerStatuses': [c.status() for c in main]})

        # initContainers one after the other, each to completion; then the containers together
        outcome: str | None = None
        for c in init:
            outcome = self._supervise(pod, [c], deadline, grace, run)
            if outcome or c.exit_code != 0:
                break
        else:
            outcome = self._supervise(pod, main, deadline, grace, run)
        ran = [c for c in init + main if c.proc is not None or c.exit_code is not None]
        failed = any(c.exit_code not in (0, None) for c in ran) or any(c.exit_code is None for c in main)
        pod.exit_code = next((c.exit_code for c in main if c.exit_code not in (0, None)),
                             next((c.exit_code for c in init + main if c.exit_code not in (0, None)),
                                  main[0].exit_code))
        pod.outcome = outcome or ('failed' if failed else 'succeeded')
        finished = now_rfc3339()
        status: dict[str, Any] = {
            'phase': 'Succeeded' if pod.outcome == 'succeeded' else 'Failed',
            'conditions': [{'type': t, 'status': 'False' if t in ('Ready', 'ContainersReady') else 'True',
                            'lastTransitionTime': finished}
                           for t in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
            'initContainerStatuses': [c.status() for c in init] or None,
            'containerStatuses': [c.status() for c in main],
        }
        if pod.outcome == 'deadline':
            status.update({'reason': 'DeadlineExceeded', 'message': 'Pod was active on the node longer than the specified deadline'})
        if not pod.deleted:
            self._patch_status('v1/pods', pod.namespace, pod.name, status)
        return pod

    def _supervise(self, pod: PodRun, group: list['ContainerRun'], deadline: float | None, grace: float,
                   run: JobRun) -> str | None:
        """Start the containers of `group` together and wait for all of them (or a kill)."""
        for c in group:
            self._start(pod, c)  # one that cannot start ends at once; the others run
        started = next((c for c in group if c.proc is not None), None)
        if pod.proc is None and started is not None:
            pod.proc = started.proc
            with self._lock:
                self.starts[run.name] += 1
        if started is not None and not started.init:
            pod.argv, pod.env = started.argv, started.env
        self._patch_status('v1/pods', pod.namespace, pod.name, {
            'phase': 'Pending' if group[0].init else 'Running',
            'conditions': [{'type': t, 'status': 'True' if (t == 'PodScheduled' or not group[0].init) else 'False',
                            'lastTransitionTime': now_rfc3339()}
                           for t in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
            ('initContainerStatuses' if group[0].init else 'containerStatuses'):
                [c.status() for c in pod.containers.values() if c.init == group[0].init]})
        if not group[0].init:
            self._patch_status('batch/v1/jobs', run.namespace, run.name, {'ready': 1})
        outcome: str | None = None
        while any(c.proc is not None and c.proc.poll() is None for c in group):
            if pod.kill_requested.is_set():
                outcome = 'killed'
                self._terminate_all(group, grace)
                break
            if deadline is not None and time.monotonic() > deadline:
                outcome = 'deadline'
                pod.kill_reason = 'DeadlineExceeded'
                self._terminate_all(group, grace)
                break
            time.sleep(0.02)
        for c in group:
            if c.proc is None:
                continue
            rc = c.proc.wait()
            if c.reader is not None:
                c.reader.join(10)
            c.exit_code = rc if rc >= 0 else 128 - rc
            c.finished = now_rfc3339()
            c.message = self._termination_message(pod, c)
        return outcome

    def _start(self, pod: PodRun, c: 'ContainerRun') -> bool:
        """Start one container's process (its own process group); False: it could not start."""
        emulator = self.server.emulator
        exe = c.argv[0]
        if '/' not in exe:
            found = shutil.which(exe, path=c.env.get('PATH', ''))
            if found is None:
                c.exit_code, c.reason = 128, 'StartError'
                c.message = f'exec: "{exe}": executable file not found in $PATH'
                c.started = c.finished = now_rfc3339()
                return False
            c.argv[0] = found
        argv = self._isolated(pod, c) if c.isolation else c.argv
        c.started = now_rfc3339()
        try:
            c.proc = subprocess.Popen(argv, env=c.env, cwd=str(c.cwd), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            c.exit_code, c.reason, c.message = 128, 'StartError', str(e)
            c.finished = c.started
            return False
        emulator.append_pod_log(pod.namespace, pod.name, b'', container=c.name)
        c.reader = threading.Thread(target=self._pump, args=(pod, c), name=f'log-{pod.name}-{c.name}', daemon=True)
        c.reader.start()
        return True

    def _termination_message(self, pod: PodRun, c: 'ContainerRun') -> str | None:
        """What the kubelet reads back: the file at terminationMessagePath (at most 4096 bytes);
        with FallbackToLogsOnError and an empty file after a failure, the log's tail."""
        data = b''
        if c.message_file is not None:
            with contextlib.suppress(OSError):
                with open(c.message_file, 'rb') as fh:
                    data = fh.read(MAX_TERMINATION_MESSAGE)
        if not data and c.exit_code not in (0, None) and c.message_policy == 'FallbackToLogsOnError':
            log = self.server.emulator.container_log(pod.namespace, pod.name, c.name).encode()
            data = b''.join(log.splitlines(keepends=True)[-80:])[-2048:]
        if not data:
            return c.message
        return data.decode('utf-8', 'replace')

    def _terminate_all(self, group: list['ContainerRun'], grace: float) -> None:
        """SIGTERM every container at once, SIGKILL what is left after the grace period."""
        procs = [c.proc for c in group if c.proc is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in procs:
            # Leftovers of the group (e.g. grandchildren) are killed too, like a container's cgroup.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _pump(self, pod: PodRun, c: 'ContainerRun') -> None:
        assert c.proc is not None and c.proc.stdout is not None
        fd = c.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.server.emulator.append_pod_log(pod.namespace, pod.name, chunk, container=c.name)
            if self.echo:
                sys.stderr.write(f'[{pod.name}/{c.name}] ' + chunk.decode('utf-8', 'replace'))
        c.proc.stdout.close()

    # --- volumes, mounts and isolation

    def _materialize_volumes(self, pod: dict[str, Any], pod_dir: pathlib.Path) -> dict[str, pathlib.Path]:
        """Each volume of the pod as a host directory ``<pod dir>/volumes/<name>``: emptyDir
        (world-writable, as the kubelet makes it), Secret and ConfigMap (their keys, or only
        ``items``, as files with ``defaultMode``/``mode``; owner root, group ``fsGroup``)."""
        ns = pod['metadata']['namespace']
        spec = pod.get('spec') or {}
        fs_group = (spec.get('securityContext') or {}).get('fsGroup')
        out: dict[str, pathlib.Path] = {}
        if spec.get('automountServiceAccountToken', True) is not False:
            # the service-account token mount, as a kubeconfig holding the pod's identity
            sa = pod_dir / 'volumes' / 'kube-api-access'
            sa.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.pod_kubeconfig or self.server.kubeconfig, sa / 'kubeconfig')
            out['kube-api-access'] = sa
        for vol in spec.get('volumes') or []:
            path = pod_dir / 'volumes' / vol['name']
            path.mkdir(parents=True, exist_ok=True)
            out[vol['name']] = path
            if 'emptyDir' in vol:
                path.chmod(0o777)
                continue
            if 'secret' in vol or 'configMap' in vol:
                src = vol.get('secret') or vol.get('configMap') or {}
                kind, name = ('v1/secrets', src.get('secretName')) if 'secret' in vol else ('v1/configmaps', src.get('name'))
                obj = self._call(self.server.emulator.find_object, kind, ns, name)
                if obj is None:
                    if src.get('optional'):
                        continue
                    raise _ConfigError(f'{"secret" if "secret" in vol else "configmap"} "{name}" not found')
                raw = obj.get('data') or {}
                data = {k: (base64.b64decode(v) if 'secret' in vol else str(v).encode()) for k, v in raw.items()}
                items = src.get('items') or [{'key': k, 'path': k} for k in sorted(data)]
                default_mode = int(src.get('defaultMode', 0o644))
                for item in items:
                    if item['key'] not in data:
                        if src.get('optional'):
                            continue
                        raise _ConfigError(f"couldn't find key {item['key']} in {kind.split('/')[1][:-1].title()} {ns}/{name}")
                    target = path / item['path']
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data[item['key']])
                    target.chmod(int(item.get('mode', default_mode)))
                    if os.geteuid() == 0 and fs_group is not None:
                        os.chown(target, 0, int(fs_group))
                path.chmod(0o755)
                continue
            raise _ConfigError(f'volume {vol["name"]!r}: only emptyDir, secret and configMap volumes are emulated')
        return out

    def _container(self, pod: dict[str, Any], spec: Mapping[str, Any], volumes: dict[str, pathlib.Path],
                   run: PodRun, *, init: bool) -> 'ContainerRun':
        """A container ready to start: its environment, mounts (container paths translated to
        the pod's host directories), command, working directory and identity."""
        c = ContainerRun(spec.get('name', ''), spec.get('image', ''), init)
        pod_spec = pod.get('spec') or {}
        mounts: list[tuple[str, pathlib.Path, bool]] = []
        for m in spec.get('volumeMounts') or []:
            if m.get('name') not in volumes:
                raise _ConfigError(f'volume {m.get("name")!r} of container {c.name!r} is not a volume of the pod')
            host = volumes[m['name']] / m['subPath'] if m.get('subPath') else volumes[m['name']]
            mounts.append((m['mountPath'].rstrip('/') or '/', host,
                           bool(m.get('readOnly')) or m['name'] in self._readonly_volumes(pod)))
        if pod_spec.get('automountServiceAccountToken', True) is not False and 'kube-api-access' in volumes:
            mounts.append((SA_MOUNT, volumes['kube-api-access'], True))
        c.home = run.dir / 'containers' / c.name
        c.home.mkdir(parents=True, exist_ok=True)
        c.message_policy = spec.get('terminationMessagePolicy', 'File')
        message_path = spec.get('terminationMessagePath', '/dev/termination-log')
        c.message_file = c.home / 'termination-log'
        c.message_file.write_bytes(b'')
        c.message_file.chmod(0o666)
        c.mounts = mounts
        c.paths = sorted([(mp, str(host)) for mp, host, _ in mounts] + [(message_path, str(c.message_file))],
                         key=lambda p: -len(p[0]))
        env = self._environment(pod, spec)
        # the container's own values name container paths; the harness's (extra_env) host paths
        own = ({e.get('name') for e in spec.get('env') or []} - set(self.extra_env)) | {'KUBECONFIG'}
        env = {k: self._translate(v, c.paths) if k in own else v for k, v in env.items()}
        argv = [self._translate(self._expand(a, env), c.paths)
                for a in list(spec.get('command') or []) + list(spec.get('args') or [])]
        if not argv:
            raise _ConfigError('the container has neither command nor args (images are not emulated)')
        c.cwd = pathlib.Path(self._translate(spec['workingDir'], c.paths)) if spec.get('workingDir') else c.home
        env.setdefault('HOME', str(c.home))
        c.argv, c.env = argv, env
        ctx = {**(pod_spec.get('securityContext') or {}), **(spec.get('securityContext') or {})}
        if self.isolate and os.geteuid() == 0 and ctx.get('runAsUser') is not None:
            c.isolation = True
            c.uid = self.usable_uid(int(ctx['runAsUser']))
            c.gid = int(ctx.get('runAsGroup', c.uid)) if c.uid else 0
            c.groups = [int(g) for g in [(pod_spec.get('securityContext') or {}).get('fsGroup')] if g is not None]
            c.hidden = [str(p) for p in [self.workdir, *self.hidden_paths]]
            image = self._image_python(c.uid) if c.uid else None
            if image is not None and image[0] != sys.executable:
                python, pythonpath = image
                c.env['PATH'] = f'{self._image_bin(python)}{os.pathsep}{c.env.get("PATH", "")}'
                c.env['PYTHONPATH'] = pythonpath
                if c.argv[0] == sys.executable:
                    c.argv[0] = python
            if c.uid:
                for _, host, ro in mounts:
                    if host.is_dir() and not ro and host.stat().st_mode & 0o777 != 0o777:
                        os.chown(host, c.uid, c.gid)
                os.chown(c.home, c.uid, c.gid)
        return c

    @staticmethod
    def _readonly_volumes(pod: dict[str, Any]) -> set[str]:
        """Secret and ConfigMap volumes are mounted read-only whatever the mount says."""
        return {v['name'] for v in (pod.get('spec') or {}).get('volumes') or []
                if 'secret' in v or 'configMap' in v}

    @staticmethod
    def _translate(text: str, paths: list[tuple[str, str]]) -> str:
        """A container path under a mountPath (the whole value, or after ``=`` in ``--opt=path``)
        becomes the host directory backing it; anything else is left alone."""
        def one(value: str) -> str:
            for mount, host in paths:
                if value == mount or value.startswith(mount + '/'):
                    return host + value[len(mount):]
            return value
        text = str(text)
        if '=' in text and not text.startswith('/'):
            head, _, tail = text.partition('=')
            return f'{head}={one(tail)}'
        return one(text)

    def usable_uid(self, uid: int) -> int:
        """``uid`` if some Python can run this harness's code as it (see `_image_python`);
        otherwise 0: root with every capability dropped."""
        return uid if self._image_python(uid) is not None else 0

    def _image_python(self, uid: int) -> tuple[str, str] | None:
        """What the worker image provides, for ``uid``: an interpreter it can execute and start
        again from itself (a pyenv under a 0700 /root is out of its reach; the system's Python
        of the same version is not), and the PYTHONPATH giving it this harness's packages."""
        with self._probe_lock:  # pods start concurrently: one probe, every pod its answer
            return self._probe_python(uid)

    def _probe_python(self, uid: int) -> tuple[str, str] | None:
        if uid not in self._uid_ok:
            import site
            path = os.pathsep.join([p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
                                   + site.getsitepackages())
            version = f'python{sys.version_info.major}.{sys.version_info.minor}'
            found: tuple[str, str] | None = None
            for candidate in (sys.executable, f'/usr/bin/{version}', f'/usr/local/bin/{version}'):
                if not os.path.exists(candidate):
                    continue
                probe = subprocess.run(
                    ['setpriv', f'--reuid={uid}', f'--regid={uid}', '--clear-groups', '--inh-caps=-all',
                     '--bounding-set=-all', candidate, '-c',
                     "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import ampx, yaml'], check=True)"],
                    capture_output=True, env={'PYTHONPATH': path, 'PATH': os.defpath}, cwd='/', timeout=60)
                if probe.returncode == 0:
                    found = (candidate, path)
                    break
            self._uid_ok[uid] = found
            if found is None:
                logger.info('uid %s can run no Python with these packages: containers run as uid 0 '
                            'without capabilities', uid)
        return self._uid_ok[uid]

    def _image_bin(self, python: str) -> pathlib.Path:
        """A directory of the "image": ``python``, ``python3`` and ``ampx`` run by ``python``."""
        d = self.shared_dir / 'bin'
        with self._probe_lock:
            self._write_image_bin(d, python)
        return d

    def _write_image_bin(self, d: pathlib.Path, python: str) -> None:
        if not (d / 'ampx').exists():
            d.mkdir(parents=True, exist_ok=True)
            for name, tail in (('python', ''), ('python3', ''), ('ampx', ' -m ampx')):
                (d / name).write_text(f'#!/bin/sh\nexec {shlex.quote(python)}{tail} "$@"\n')
                (d / name).chmod(0o755)
            self.share_with_pods(d)

    @staticmethod
    def _isolated(pod: PodRun, c: 'ContainerRun') -> list[str]:
        """The container's command wrapped as a container runtime would start it: its own PID
        namespace (PID 1, /proc showing only its processes) and mount namespace (the kubelet's
        directory and the hidden paths covered by an empty tmpfs, then only this container's
        volumes bound back, read-only where mounted so), its user, no capabilities."""
        binds = [(str(host), host.is_dir(), ro) for _, host, ro in c.mounts]
        binds += [(str(c.home), True, False)]
        lines = ['set -e']
        for i, (host, _, _) in enumerate(binds):
            lines.append(f'exec {i + 3}<{shlex.quote(host)}' if pathlib.Path(host).is_dir()
                         else f'exec {i + 3}<>{shlex.quote(host)}')
        for hidden in c.hidden:
            lines.append(f'mount -t tmpfs -o size=1m,mode=0755 ampx-hidden {shlex.quote(hidden)}')
        for i, (host, is_dir, ro) in enumerate(binds):
            q = shlex.quote(host)
            lines.append(f'mkdir -p {q}' if is_dir else f'mkdir -p "$(dirname {q})"; : > {q}')
            lines.append(f'mount --no-canonicalize --bind /proc/self/fd/{i + 3} {q}')
            if ro:
                lines.append(f'mount -o remount,bind,ro {q}')
            lines.append(f'exec {i + 3}<&-')
        lines.append(f'cd {shlex.quote(str(c.cwd))}')
        groups = ','.join(str(g) for g in c.groups)
        priv = ['setpriv', f'--reuid={c.uid}', f'--regid={c.gid}',
                f'--groups={groups}' if groups else '--clear-groups',
                '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--']
        lines.append('exec ' + ' '.join(shlex.quote(a) for a in priv + c.argv))
        return ['unshare', '--pid', '--fork', '--mount-proc', '--mount', '--propagation', 'private',
                '/bin/sh', '-c', '\n'.join(lines)]


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
        # the pod's service-account token (mounted unless automountServiceAccountToken: false)
        if (pod.get('spec') or {}).get('automountServiceAccountToken', True) is not False:
            env['KUBECONFIG'] = f'{SA_MOUNT}/kubeconfig'
        else:
            env.pop('KUBECONFIG', None)
        return env
