"""
Run the emulator on a real local port in a background thread, for synchronous tests,
real clients (kubernetes, kopf, kubectl) and subprocesses (via a kubeconfig file).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import kmock
import yaml

from .emulator import AmpxKubernetesEmulator

T = TypeVar('T')

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_CRD = REPO_ROOT / 'crds' / 'amptask.yaml'
DEFAULT_TOKEN = 'kubeharness-token'


class _Server(kmock.Server):
    """kmock.Server without its process-wide DNS interceptor (not needed for 127.0.0.1)."""

    async def __aenter__(self) -> Self:
        if self._managed_server is not None:
            raise RuntimeError('The server can be started/entered only once.')
        self._managed_server = self._server_cls(self.handler, host=self._host, port=self._port)
        await self._managed_server.__aenter__()
        self._managed_client = self._client_fct(self._managed_server.make_url('/'))
        if self.user_agent:
            self._managed_client.headers.update({'User-Agent': self.user_agent})
        await self._managed_client.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        if self in self.handler.servers:
            self.handler.servers.remove(self)
        assert self._managed_client is not None and self._managed_server is not None
        await self._managed_client.__aexit__(exc_type, exc_value, traceback)
        await self._managed_server.__aexit__(exc_type, exc_value, traceback)
        self._managed_client = None
        self._managed_server = None


def write_kubeconfig(path: pathlib.Path, url: str, *, namespace: str = 'default', token: str = DEFAULT_TOKEN) -> pathlib.Path:
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': 'emulator', 'cluster': {'server': url}}],
        'users': [{'name': 'emulator', 'user': {'token': token}}],
        'contexts': [{'name': 'emulator', 'context': {'cluster': 'emulator', 'user': 'emulator', 'namespace': namespace}}],
        'current-context': 'emulator',
        'preferences': {},
    }
    path.write_text(yaml.safe_dump(config))
    return path


class KubeServer:
    """
    The emulator served on ``127.0.0.1:<random port>`` from a background thread/loop.

    Use as a context manager (``with KubeServer() as kube: ...``). Exposes ``url``,
    ``kubeconfig`` (a file path), ``emulator``, ``run(coro)``/``call(fn, ...)`` to execute
    in the emulator's loop, and synchronous helpers that are safe from any thread.
    """

    def __init__(self, *, crd_path: str | os.PathLike[str] | None = DEFAULT_CRD,
                 namespaces: Sequence[str] = ('default', 'team-a'),
                 workdir: str | os.PathLike[str] | None = None,
                 user: str = 'system:serviceaccount:default:ampx',
                 **emulator_kwargs: Any) -> None:
        self._crd_path = crd_path
        self._namespaces = list(namespaces)
        self._emulator_kwargs = emulator_kwargs
        self._user = user
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = pathlib.Path(workdir) if workdir is not None else None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.emulator: AmpxKubernetesEmulator = None  # type: ignore[assignment]
        self.url: str = ''
        self.port: int = 0
        self.kubeconfig: pathlib.Path = None  # type: ignore[assignment]
        self.token = DEFAULT_TOKEN

    # --- lifecycle

    def start(self) -> Self:
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix='kubeharness-')
            self._workdir = pathlib.Path(self._tmp.name)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._thread_main, name='kubeharness-apiserver', daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise RuntimeError('The emulator failed to start') from self._startup_error
        if not self._ready.is_set():
            raise RuntimeError('The emulator did not start in time')
        self.kubeconfig = write_kubeconfig(self._workdir / 'kubeconfig', self.url, token=self.token)
        return self

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # pragma: no cover
            self._startup_error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        kwargs = dict(self._emulator_kwargs)
        kwargs.setdefault('namespaces', self._namespaces)
        kwargs.setdefault('default_user', self._user)
        self.emulator = AmpxKubernetesEmulator(crd_path=self._crd_path, **kwargs)
        self.emulator.tokens.setdefault(self.token, self._user)
        async with self.emulator, _Server(self.emulator) as server:
            self.port = server.port
            self.url = f'http://127.0.0.1:{server.port}'
            self._ready.set()
            await self._stop.wait()
            await self.emulator.close_streams()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    @property
    def workdir(self) -> pathlib.Path:
        assert self._workdir is not None
        return self._workdir

    # --- calling into the loop

    def run(self, coro: Awaitable[T], timeout: float | None = 30) -> T:
        """Run a coroutine in the emulator's loop and wait for its result (from another thread)."""
        assert self._loop is not None
        if threading.current_thread() is self._thread:
            raise RuntimeError('KubeServer.run() cannot be called from the emulator loop itself')
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a synchronous function in the emulator's loop thread and return its result."""
        async def _call() -> T:
            return fn(*args, **kwargs)
        return self.run(_call())

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule a function in the emulator loop without waiting (fire and forget)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)

    # --- synchronous helpers (any thread)

    def create(self, obj: Mapping[str, Any], namespace: str | None = None, *, resource: Any = None) -> dict[str, Any]:
        """Create an object (in ``default`` unless told); the resource is guessed from ``apiVersion``/``kind``."""
        res = resource if resource is not None else self._resource_of(obj)
        ns = namespace if namespace is not None else (obj.get('metadata') or {}).get('namespace') or 'default'
        return self.call(self.emulator.create_object, res, obj, ns)

    def _resource_of(self, obj: Mapping[str, Any]) -> Any:
        api_version = obj.get('apiVersion', 'v1')
        kind = obj.get('kind')
        if not kind:
            raise ValueError('An object needs a kind (or pass resource=...)')

        def find() -> Any:
            group, _, version = api_version.rpartition('/')
            for res in self.emulator.resources:
                if res.group == group and res.version == version:
                    meta = self.emulator.resolve(res)
                    if meta.kind == kind:
                        return meta
            raise KeyError(f'No resource for {api_version} {kind}')
        return self.call(find)

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None if absent."""
        return self.call(self.emulator.find_object, self._res(group, version, plural), namespace, name)

    def list(self, group: str, version: str, plural: str, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.list_objects, self._res(group, version, plural), namespace,
                         label_selector=label_selector, field_selector=field_selector)

    def objects(self, resource: Any, namespace: str | None = None, **selectors: Any) -> list[dict[str, Any]]:
        """Objects by any resource notation: ``'jobs'``, ``'at'``, ``'batch/v1/jobs'``…"""
        return self.call(self.emulator.list_objects, resource, namespace, **selectors)

    def find(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.call(self.emulator.find_object, resource, namespace, name)

    def patch(self, resource: Any, namespace: str | None, name: str, patch: Any, *,
              patch_type: str = 'merge', subresource: str | None = None) -> dict[str, Any]:
        return self.call(self.emulator.patch_object, resource, namespace, name, patch,
                         patch_type=patch_type, subresource=subresource)

    def patch_status(self, resource: Any, namespace: str | None, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        return self.patch(resource, namespace, name, {'status': dict(status)}, subresource='status')

    def delete(self, resource: Any, namespace: str | None, name: str, *, propagation_policy: str | None = 'Background') -> dict[str, Any]:
        return self.call(self.emulator.delete_object, resource, namespace, name, propagation_policy=propagation_policy)

    def create_secret(self, name: str, data: Mapping[str, str], namespace: str = 'default') -> dict[str, Any]:
        return self.create({'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': name, 'namespace': namespace},
                            'stringData': dict(data)})

    def pod_log(self, namespace: str, name: str) -> str:
        return self.emulator.pod_log(namespace, name)

    @staticmethod
    def _res(group: str, version: str, plural: str) -> str:
        return f'{group}/{version}/{plural}' if group else f'{version}/{plural}'

    # --- waiting

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10, interval: float = 0.02, message: str = '') -> T:
        """Poll ``predicate()`` until truthy; return its value or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(message or f'Condition not met in {timeout}s: {predicate!r}')
            time.sleep(interval)

    def wait_for_watch(self, resource: Any, timeout: float = 10, namespace: str | None = None, count: int = 1) -> None:
        """Wait until ``count`` watch streams on the resource are open (e.g. kopf is ready)."""
        self.wait_for(lambda: self.call(self.emulator.watch_count, resource, namespace) >= count,
                      timeout=timeout, message=f'No watch on {resource!r} within {timeout}s')

    def wait_for_object(self, resource: Any, namespace: str | None, name: str,
                        predicate: Callable[[dict[str, Any]], Any] = lambda o: True, timeout: float = 10) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            obj = self.find(resource, namespace, name)
            return obj if obj is not None and predicate(obj) else None
        return self.wait_for(check, timeout=timeout, message=f'{resource} {namespace}/{name} not as expected within {timeout}s')

    def wait_for_absence(self, resource: Any, namespace: str | None, name: str, timeout: float = 10) -> None:
        self.wait_for(lambda: self.find(resource, namespace, name) is None, timeout=timeout,
                      message=f'{resource} {namespace}/{name} still exists after {timeout}s')

    # --- request log

    def requests(self, *, method: str | None = None, path_contains: str | None = None) -> list[Any]:
        """Recorded requests (kmock ``Request`` objects) filtered by method/path."""
        def snapshot() -> list[Any]:
            return list(self.emulator._requests)
        result = []
        for req in self.call(snapshot):
            if method is not None and req.method.upper() != method.upper():
                continue
            if path_contains is not None and path_contains not in str(req.url):
                continue
            result.append(req)
        return result

    # --- subprocesses

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for subprocesses that talk to this emulator (KUBECONFIG set)."""
        env = dict(os.environ)
        env['KUBECONFIG'] = str(self.kubeconfig)
        bindir = str(pathlib.Path(sys.executable).parent)
        if bindir not in env.get('PATH', '').split(os.pathsep):
            env['PATH'] = bindir + os.pathsep + env.get('PATH', '')
        env.update(extra)
        return env

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig <ours> ...`` and return the completed process."""
        cache = self.workdir / 'kubectl-cache'
        result = subprocess.run(['kubectl', '--kubeconfig', str(self.kubeconfig), f'--cache-dir={cache}', *args],
                                capture_output=True, text=True, input=input, timeout=timeout, env=self.env())
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
              log_path: str | os.PathLike[str] | None = None) -> ManagedProcess:
        """Start a subprocess (e.g. an operator) against this emulator; see :class:`ManagedProcess`."""
        full_env = self.env(**dict(env or {}))
        log = pathlib.Path(log_path) if log_path else self.workdir / f'proc-{len(list(self.workdir.glob("proc-*.log")))}.log'
        return ManagedProcess(argv, env=full_env, cwd=cwd, log_path=log)


    def run_kopf(self, handlers: str | os.PathLike[str], *, namespace: str = 'default',
                 wait_for: Any = None, timeout: float = 20, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> ManagedProcess:
        """
        Run ``python -m kopf run --standalone -n <namespace> <handlers>`` against this emulator
        and (if ``wait_for`` names a resource) wait until its watch stream is open.
        The handlers file should set ``settings.scanning.disabled = True`` in a startup handler.
        """
        before = self.call(self.emulator.watch_count, wait_for) if wait_for is not None else 0
        proc = self.spawn([sys.executable, '-m', 'kopf', 'run', '--standalone', '-n', namespace,
                           *extra_args, str(handlers)], env=env)
        if wait_for is not None:
            try:
                self.wait_for(lambda: proc.returncode is not None or
                              self.call(self.emulator.watch_count, wait_for) > before, timeout=timeout)
            except TimeoutError:
                proc.stop()
                raise TimeoutError(f'kopf did not start watching {wait_for!r} within {timeout}s:\n{proc.output}') from None
            if proc.returncode is not None:
                raise RuntimeError(f'kopf exited with {proc.returncode}:\n{proc.output}')
        return proc


class ManagedProcess:
    """A subprocess in its own process group, output captured to a file; stopped gracefully."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str] | None,
                 log_path: pathlib.Path) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.proc = subprocess.Popen(self.argv, env=dict(env), cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait_for_output(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.proc.poll() is not None:
                raise RuntimeError(f'Process exited with {self.proc.returncode} before printing {text!r}:\n{self.output}')
            if time.monotonic() > deadline:
                raise TimeoutError(f'{text!r} not printed within {timeout}s:\n{self.output}')
            time.sleep(0.02)

    def stop(self, grace: float = 5) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
