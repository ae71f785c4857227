"""
An in-memory Kubernetes API server for tests: kmock's emulator with the gaps of kmock 0.8 closed.

:class:`AmpxKubernetesEmulator` serves every Kubernetes request itself (user-defined kmock
reactions, e.g. ``emulator['get /api/v1/pods'] << 500``, still take precedence), keeping the
objects in kmock's ``emulator.objects`` store (each write appends a full version to the history).

What it adds over kmock 0.8: uid/creationTimestamp/generation/resourceVersion, generateName,
Status bodies for errors, the status subresource, merge/strategic/JSON patches and PUT,
optimistic concurrency, CRD schema pruning/defaulting/validation, typed lists, selectors,
watches from a resourceVersion with a bounded event log (410 Expired when too old), bookmarks,
``timeoutSeconds``, DeleteOptions with garbage collection (Background/Foreground/Orphan),
discovery of builtins + CRDs, server-side Table rendering, pod logs (incl. ``follow``),
RBAC denials and a little builtin defaulting/validation of Jobs, Pods, Secrets and Namespaces.

Threading: the emulator lives in one asyncio loop (see :class:`kubeharness.server.KubeServer`).
Its public object methods (``create_object`` …) are synchronous and must be called in that
loop's thread; from other threads use the ``KubeServer`` helpers, which marshal the calls.
Only :meth:`append_pod_log` and :attr:`pod_logs` reads are safe from any thread.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import logging
import math
import pathlib
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema
import kmock
import yaml
from kmock._internal import enums, parsing, references, rendering

from . import _util

logger = logging.getLogger('kubeharness.emulator')

FULL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
JOB_ORPHAN_WARNING = (
    'child pods are preserved by default when jobs are deleted; set propagationPolicy=Background '
    'to remove them or set propagationPolicy=Orphan to suppress this warning'
)


class ApiError(Exception):
    """A Kubernetes API error rendered as a ``Status`` object with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None
        self.headers = dict(headers or {})

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
            'status': 'Failure', 'message': self.message, 'reason': self.reason, 'code': self.code,
        }
        if self.details:
            body['details'] = self.details
        return body


@attrs.define(eq=False)
class ResourceMeta:
    """Everything the emulator knows about one served resource (group/version/plural)."""
    resource: references.resource
    kind: str
    singular: str
    namespaced: bool
    subresources: set[str]
    shortnames: set[str]
    categories: set[str]
    verbs: list[str]
    schema: dict[str, Any] | None = None   # openAPIV3Schema of a CRD version
    validator: Any = None                  # jsonschema validator of a CRD version
    printer_columns: list[dict[str, Any]] = attrs.field(factory=list)
    is_crd: bool = False

    @property
    def group(self) -> str:
        return self.resource.group or ''

    @property
    def version(self) -> str:
        return self.resource.version or ''

    @property
    def plural(self) -> str:
        return self.resource.plural or ''

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f'{self.kind}List'

    @property
    def qualified(self) -> str:
        """``jobs.batch``, ``pods``, ``amptasks.ampx.dev`` — as in API error messages."""
        return f'{self.plural}.{self.group}' if self.group else self.plural

    @property
    def kind_qualified(self) -> str:
        """``Job.batch``, ``Pod``, ``AmpTask.ampx.dev`` — as in validation error messages."""
        return f'{self.kind}.{self.group}' if self.group else self.kind

    def __repr__(self) -> str:
        return f'<ResourceMeta {self.api_version}/{self.plural}>'


@attrs.define(eq=False)
class _Event:
    rv: int
    resource: references.resource
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None


@attrs.define(eq=False)
class WatchSubscription:
    """One open watch stream (exposed via :attr:`AmpxKubernetesEmulator.watches`)."""
    meta: ResourceMeta
    namespace: str | None
    name: str | None
    label_selector: str
    field_selector: str
    label_match: Callable[[Mapping[str, str]], bool]
    field_match: Callable[[Mapping[str, Any]], bool]
    queue: asyncio.Queue[_Event | None] = attrs.field(factory=asyncio.Queue)
    user_agent: str = ''

    def _matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        md = obj.get('metadata') or {}
        if self.namespace is not None and md.get('namespace') != self.namespace:
            return False
        if self.name is not None and md.get('name') != self.name:
            return False
        return self.label_match(md.get('labels') or {}) and self.field_match(obj)

    def translate(self, event: _Event) -> str | None:
        """The event type this watcher sees (selector transitions become ADDED/DELETED)."""
        if event.resource != self.meta.resource:
            return None
        new_ok = self._matches(event.obj)
        if event.type == 'MODIFIED':
            old_ok = self._matches(event.old)
            if new_ok and old_ok:
                return 'MODIFIED'
            if new_ok:
                return 'ADDED'
            if old_ok:
                return 'DELETED'
            return None
        return event.type if new_ok else None


@attrs.define(eq=False)
class _Denial:
    verb: str
    group: str | None
    plural: str
    namespace: str | None
    user: str | None

    def matches(self, user: str, verb: str, meta: ResourceMeta, subresource: str | None, namespace: str | None) -> bool:
        if self.verb not in ('*', verb):
            return False
        full = f'{meta.plural}/{subresource}' if subresource else meta.plural
        if self.plural not in ('*', full):
            return False
        if self.group is not None and self.group != meta.group:
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        if self.user is not None and self.user != user:
            return False
        return True


def _rand5() -> str:
    return ''.join(random.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))


def _meta_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    md = obj.get('metadata')
    return md if isinstance(md, dict) else {}


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(obj)
    md = dict(_meta_of(obj))
    for key in ('resourceVersion', 'managedFields', 'generation'):
        md.pop(key, None)
    result['metadata'] = md
    return result


@attrs.define(kw_only=True)
class AmpxKubernetesEmulator(kmock.KubernetesEmulator):
    """
    The kmock Kubernetes emulator with realistic API-server semantics (see the module doc).

    :param crd_path: a CRD YAML file (e.g. ``crds/amptask.yaml``) to serve, validate and show.
    :param crds: more CRDs: paths or already-parsed dicts.
    :param namespaces: namespaces created at start.
    :param event_log_size: how many watch events are kept for watches resuming from a version.
    :param bookmark_interval: seconds between BOOKMARK events (if a watch allows bookmarks).
    :param default_user: the user name of unknown tokens (in RBAC denial messages).
    :param require_namespaces: reject creations in non-existent namespaces (404), as real servers do.
    :param job_default_propagation: what ``DELETE`` of a batch/v1 Job does without a
        propagationPolicy. The real API server orphans the pods (``Orphan``, with a Warning header).
    """

    crd_path: str | pathlib.Path | None = None
    crds: Sequence[str | pathlib.Path | Mapping[str, Any]] = ()
    namespaces: Sequence[str] = ('default',)
    event_log_size: int = 10000
    bookmark_interval: float = 5.0
    default_user: str = 'system:serviceaccount:default:ampx'
    tokens: dict[str, str] = attrs.field(factory=dict)
    #: the user of requests without a bearer token (None: ``default_user``, the harness's own);
    #: e.g. ``system:anonymous`` with an empty RBAC set, as a real API server treats them
    anonymous_user: str | None = None
    require_namespaces: bool = True
    job_default_propagation: str = 'Orphan'
    log_poll_interval: float = 0.05

    # The public in-memory state.
    pod_logs: dict[tuple[str, str], bytearray] = attrs.field(factory=dict, init=False)
    #: per-container logs of multi-container pods (the kubelet stand-in writes both)
    container_logs: dict[tuple[str, str, str], bytearray] = attrs.field(factory=dict, init=False)
    server_errors: list[BaseException] = attrs.field(factory=list, init=False)

    _rv: int = attrs.field(default=100, init=False)
    _metas: dict[references.resource, ResourceMeta] = attrs.field(factory=dict, init=False)
    _uids: dict[str, tuple[references.resource, str | None, str]] = attrs.field(factory=dict, init=False)
    _event_log: collections.deque[_Event] = attrs.field(init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _subs: list[WatchSubscription] = attrs.field(factory=list, init=False)
    _listeners: list[Callable[[str, ResourceMeta, dict[str, Any], dict[str, Any] | None], None]] = attrs.field(factory=list, init=False)
    _denials: list[_Denial] = attrs.field(factory=list, init=False)
    #: RBAC allow-lists: a user named here may do only what its set of (group, resource, verb)
    #: or (group, resource, verb, resourceName) names (deny by default, as RBAC); every
    #: permission such a user used is recorded.
    rbac: dict[str, frozenset[tuple[str, str, str]]] = attrs.field(factory=dict, init=False)
    rbac_used: set[tuple[str, str, str, str]] = attrs.field(factory=set, init=False)
    _pending_policy: dict[str, str] = attrs.field(factory=dict, init=False)
    _closing: asyncio.Event | None = attrs.field(default=None, init=False)
    _log_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _stream_tasks: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._event_log = collections.deque()
        self.resources.load_bundled()
        for path in ([self.crd_path] if self.crd_path else []) + list(self.crds):
            if isinstance(path, Mapping):
                self.register_crd(path)
            else:
                for doc in yaml.safe_load_all(pathlib.Path(path).read_text()):
                    if isinstance(doc, Mapping) and doc.get('kind') == 'CustomResourceDefinition':
                        self.register_crd(doc)
        for ns in self.namespaces:
            self.ensure_namespace(ns)

    # -----------------------------------------------------------------------------------------
    # Resources & CRDs

    def register_crd(self, crd: Mapping[str, Any], *, store: bool = True) -> list[ResourceMeta]:
        """Serve a CRD's resources (discovery, schema validation, printer columns)."""
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        group = spec['group']
        plural = names['plural']
        metas = []
        for version in spec.get('versions') or []:
            if not version.get('served', True):
                continue
            res = references.resource(group, version['name'], plural)
            subresources = set((version.get('subresources') or {}).keys())
            info = references.ResourceInfo(
                kind=names['kind'],
                singular=names.get('singular') or names['kind'].lower(),
                namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
                verbs=set(FULL_VERBS),
                shortnames=set(names.get('shortNames') or []),
                categories=set(names.get('categories') or []),
                subresources=subresources,
            )
            self.resources[res] = info
            self._metas.pop(res, None)
            meta = self._meta(res)
            assert meta is not None
            schema = ((version.get('schema') or {}).get('openAPIV3Schema'))
            meta.is_crd = True
            meta.schema = copy.deepcopy(schema) if schema else None
            meta.validator = jsonschema.Draft4Validator(_util.to_jsonschema(schema)) if schema else None
            meta.printer_columns = list(version.get('additionalPrinterColumns') or [])
            metas.append(meta)
        if store:
            crd_meta = self.resolve('apiextensions.k8s.io/v1/customresourcedefinitions')
            name = (crd.get('metadata') or {}).get('name') or f'{plural}.{group}'
            if self._live(crd_meta, None, name) is None:
                body = copy.deepcopy(dict(crd))
                body.setdefault('metadata', {})['name'] = name
                body['status'] = self._crd_status(crd)
                self._store_new(crd_meta, body)
        return metas

    @staticmethod
    def _crd_status(crd: Mapping[str, Any]) -> dict[str, Any]:
        now = _util.now_rfc3339()
        names = dict((crd.get('spec') or {}).get('names') or {})
        names.setdefault('listKind', f"{names.get('kind')}List")
        names.setdefault('singular', str(names.get('kind', '')).lower())
        return {
            'acceptedNames': names,
            'conditions': [
                {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                 'message': 'no conflicts found', 'lastTransitionTime': now},
                {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                 'message': 'the initial names have been accepted', 'lastTransitionTime': now},
            ],
            'storedVersions': [v['name'] for v in (crd.get('spec') or {}).get('versions') or [] if v.get('storage')],
        }

    def _meta(self, res: references.resource) -> ResourceMeta | None:
        if res in self._metas:
            return self._metas[res]
        if res not in self.resources:
            return None
        info = self.resources[res]
        plural = res.plural or ''
        subs = set(info.subresources)
        meta = ResourceMeta(
            resource=res,
            kind=info.kind or plural.capitalize(),
            singular=info.singular or plural,
            namespaced=True if info.namespaced is None else bool(info.namespaced),
            subresources=subs,
            shortnames=set(info.shortnames),
            categories=set(info.categories),
            verbs=sorted(info.verbs) if info.verbs else list(FULL_VERBS),
        )
        self._metas[res] = meta
        return meta

    def resolve(self, spec: Any) -> ResourceMeta:
        """
        Find a served resource by any usual notation: ``'batch/v1/jobs'``, ``'v1/pods'``,
        ``'jobs.batch'``, ``'amptasks'``, ``'at'``, ``'AmpTask'``, a kmock resource, a meta.
        """
        if isinstance(spec, ResourceMeta):
            return spec
        if isinstance(spec, references.resource) and spec.group is not None and spec.version is not None:
            meta = self._meta(spec)
            if meta is None:
                raise KeyError(f'Unknown resource: {spec!r}')
            return meta
        candidates: list[references.resource] = list(self.resources)
        if isinstance(spec, str) and '/' not in spec and '.' not in spec:
            low = spec.lower()
            matches = []
            for res in candidates:
                info = self.resources[res]
                names = {res.plural, (info.singular or ''), (info.kind or '').lower()} | set(info.shortnames)
                if low in names:
                    matches.append(res)
        else:
            pattern = spec if isinstance(spec, references.resource) else references.resource(spec)
            matches = [res for res in candidates if pattern.check(res)]
        if not matches:
            raise KeyError(f'Unknown resource: {spec!r}')
        matches.sort(key=lambda r: (r.group != '', 0 if not r.group or not r.group.endswith('.k8s.io') else 1))
        meta = self._meta(matches[0])
        assert meta is not None
        return meta

    # -----------------------------------------------------------------------------------------
    # Storage primitives (loop thread only)

    def _key(self, meta: ResourceMeta, namespace: str | None, name: str) -> tuple[references.resource, str | None, str]:
        return (meta.resource, namespace if meta.namespaced else None, name)

    def _live(self, meta: ResourceMeta, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(meta, namespace, name)
        if key not in self.objects:
            return None
        obj = self.objects[key]
        if obj.deleted:
            return None
        return obj.raw

    def _live_or_404(self, meta: ResourceMeta, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._live(meta, namespace, name)
        if obj is None:
            raise self._not_found(meta, name)
        return obj

    @staticmethod
    def _not_found(meta: ResourceMeta, name: str) -> ApiError:
        return ApiError(404, 'NotFound', f'{meta.qualified} "{name}" not found',
                        {'name': name, 'group': meta.group, 'kind': meta.plural})

    def _iter_live(self, meta: ResourceMeta | None = None) -> Iterable[tuple[ResourceMeta, dict[str, Any]]]:
        for (res, _ns, _name), obj in list(self.objects.items()):
            if meta is not None and res != meta.resource:
                continue
            if obj.deleted:
                continue
            m = self._meta(res)
            if m is None:
                continue
            yield m, obj.raw

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    @property
    def resource_version(self) -> str:
        """The current (latest) global resourceVersion."""
        return str(self._rv)

    def _emit(self, meta: ResourceMeta, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        event = _Event(int(_meta_of(obj).get('resourceVersion') or self._rv), meta.resource, type_, obj, old)
        if len(self._event_log) >= self.event_log_size:
            dropped = self._event_log.popleft()
            self._log_floor = dropped.rv
        self._event_log.append(event)
        for sub in list(self._subs):
            sub.queue.put_nowait(event)
        for listener in list(self._listeners):
            try:
                listener(type_, meta, copy.deepcopy(obj), copy.deepcopy(old) if old is not None else None)
            except Exception:  # pragma: no cover
                logger.exception('A listener of the emulator failed.')

    def _store_new(self, meta: ResourceMeta, obj: dict[str, Any]) -> dict[str, Any]:
        """Assign server fields and store a brand-new object (no validation)."""
        md = obj.setdefault('metadata', {})
        md.setdefault('uid', str(uuid.uuid4()))
        md.setdefault('creationTimestamp', _util.now_rfc3339())
        md.setdefault('generation', 1)
        md['resourceVersion'] = str(self._next_rv())
        obj['kind'] = meta.kind
        obj['apiVersion'] = meta.api_version
        key = self._key(meta, md.get('namespace'), md['name'])
        if key in self.objects:
            self.objects[key].create(obj)
        else:
            self.objects[key] = obj
        self._uids[md['uid']] = key
        self._emit(meta, 'ADDED', copy.deepcopy(obj), None)
        return obj

    def _store_update(self, meta: ResourceMeta, old: dict[str, Any], new: dict[str, Any]) -> None:
        md = new['metadata']
        key = self._key(meta, md.get('namespace'), md['name'])
        self.objects[key].history.append(new)
        self._emit(meta, 'MODIFIED', copy.deepcopy(new), copy.deepcopy(old))

    def add_listener(self, fn: Callable[[str, ResourceMeta, dict[str, Any], dict[str, Any] | None], None]) -> None:
        """Call ``fn(type, meta, obj, old)`` synchronously (in the loop) on every change."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[..., None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def compact(self) -> None:
        """Forget the watch event log, so that watches from older versions get 410 Gone."""
        self._log_floor = self._rv
        self._event_log.clear()

    @property
    def request_log(self) -> list[rendering.Request]:
        """All requests received so far (kmock ``Request`` objects: method, url, params, data…)."""
        return list(self._requests)

    @property
    def watches(self) -> list[WatchSubscription]:
        """Currently open watch streams."""
        return list(self._subs)

    def watch_count(self, resource: Any, namespace: str | None = None) -> int:
        meta = self.resolve(resource)
        return sum(1 for s in self._subs if s.meta is meta and (namespace is None or s.namespace in (None, namespace)))

    # -----------------------------------------------------------------------------------------
    # Public object API (loop thread only)

    def ensure_namespace(self, name: str) -> dict[str, Any]:
        meta = self.resolve('v1/namespaces')
        existing = self._live(meta, None, name)
        if existing is not None:
            return copy.deepcopy(existing)
        return self.create_object(meta, {'metadata': {'name': name}})

    def get_object(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any]:
        meta = self.resolve(resource)
        return copy.deepcopy(self._live_or_404(meta, namespace, name))

    def find_object(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        meta = self.resolve(resource)
        obj = self._live(meta, namespace, name)
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource: Any, namespace: str | None = None, *,
                     label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        meta = self.resolve(resource)
        try:
            lmatch = _util.parse_label_selector(label_selector)
            fmatch = _util.parse_field_selector(field_selector)
        except _util.SelectorError as e:
            raise ApiError(400, 'BadRequest', str(e)) from None
        result = []
        for _, obj in self._iter_live(meta):
            md = _meta_of(obj)
            if namespace is not None and md.get('namespace') != namespace:
                continue
            if lmatch(md.get('labels') or {}) and fmatch(obj):
                result.append(copy.deepcopy(obj))
        result.sort(key=lambda o: (_meta_of(o).get('namespace') or '', _meta_of(o).get('name') or ''))
        return result

    def create_object(self, resource: Any, obj: Mapping[str, Any], namespace: str | None = None, *,
                      dry_run: bool = False, field_validation: str | None = None,
                      warnings: list[str] | None = None) -> dict[str, Any]:
        meta = self.resolve(resource)
        if not isinstance(obj, Mapping):
            raise ApiError(400, 'BadRequest', 'the body of the request was in an unknown format')
        new: dict[str, Any] = copy.deepcopy(dict(obj))
        md = new.get('metadata')
        if md is None:
            md = new['metadata'] = {}
        if not isinstance(md, dict):
            raise ApiError(400, 'BadRequest', 'metadata must be an object')
        if new.get('kind') not in (None, '', meta.kind):
            raise ApiError(400, 'BadRequest', f"the kind of the object ({new.get('kind')}) does not match the resource ({meta.kind})")
        if new.get('apiVersion') not in (None, '', meta.api_version):
            raise ApiError(400, 'BadRequest', f"the API version in the data ({new.get('apiVersion')}) does not match the expected API version ({meta.api_version})")
        new['kind'] = meta.kind
        new['apiVersion'] = meta.api_version

        ns: str | None = None
        if meta.namespaced:
            body_ns = md.get('namespace')
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            ns = namespace or body_ns
            if not ns:
                raise ApiError(400, 'BadRequest', 'the namespace of the object is required for a namespaced resource')
            md['namespace'] = ns
            if self.require_namespaces:
                ns_obj = self._live(self.resolve('v1/namespaces'), None, ns)
                if ns_obj is None:
                    raise ApiError(404, 'NotFound', f'namespaces "{ns}" not found', {'name': ns, 'kind': 'namespaces'})
                if _meta_of(ns_obj).get('deletionTimestamp'):
                    raise ApiError(403, 'Forbidden', f'{meta.qualified} "{md.get("name") or md.get("generateName") or ""}" is forbidden: '
                                   f'unable to create new content in namespace {ns} because it is being terminated')
        else:
            md.pop('namespace', None)

        name = md.get('name')
        if not name:
            prefix = md.get('generateName')
            if not prefix:
                raise self._invalid(meta, '', [('metadata.name', 'FieldValueRequired', 'Required value: name or generateName is required')])
            for _ in range(100):
                name = f'{prefix}{_rand5()}'
                if self._live(meta, ns, name) is None:
                    break
            md['name'] = name
        if self._live(meta, ns, name) is not None:
            raise ApiError(409, 'AlreadyExists', f'{meta.qualified} "{name}" already exists',
                           {'name': name, 'group': meta.group, 'kind': meta.plural})

        for field in ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp',
                      'deletionGracePeriodSeconds', 'generation', 'selfLink', 'managedFields'):
            md.pop(field, None)
        md['uid'] = str(uuid.uuid4())
        md['creationTimestamp'] = _util.now_rfc3339()
        md['generation'] = 1
        if 'status' in meta.subresources:
            new.pop('status', None)

        self._default_builtin(meta, new, None)
        self._prune_default_validate(meta, new, None, field_validation=field_validation, warnings=warnings)
        if dry_run:
            return new
        stored = self._store_new(meta, new)
        if meta.plural == 'pods' and meta.group == '':
            with self._log_lock:
                self.pod_logs.pop((ns or '', name), None)
        if meta.group == 'apiextensions.k8s.io' and meta.plural == 'customresourcedefinitions':
            self.register_crd(stored, store=False)
            status_new = copy.deepcopy(stored)
            status_new['status'] = self._crd_status(stored)
            self._commit(meta, stored, status_new)
            stored = self._live_or_404(meta, None, name)
        return copy.deepcopy(stored)

    def patch_object(self, resource: Any, namespace: str | None, name: str, patch: Any, *,
                     patch_type: str = 'merge', subresource: str | None = None, dry_run: bool = False,
                     field_validation: str | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
        """Patch with ``patch_type`` = ``merge`` | ``strategic`` | ``json`` | ``apply``."""
        meta = self.resolve(resource)

        def compute(old: dict[str, Any]) -> dict[str, Any]:
            if patch_type == 'json':
                if not isinstance(patch, list):
                    raise ApiError(400, 'BadRequest', 'a JSON patch must be a list of operations')
                try:
                    return jsonpatch.apply_patch(old, patch)
                except jsonpatch.JsonPatchTestFailed as e:
                    raise self._invalid_generic(meta, name, f'the server rejected our request due to an error in our request: {e}') from None
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError) as e:
                    raise self._invalid_generic(meta, name, f'the server rejected our request due to an error in our request: {e}') from None
            if not isinstance(patch, Mapping):
                raise ApiError(400, 'BadRequest', 'a merge patch must be a JSON object')
            if patch_type == 'strategic':
                return _util.strategic_merge_patch(old, patch)
            p = _util.strip_smp_directives(patch) if patch_type == 'apply' else patch
            return _util.merge_patch(old, p)

        return self._update(meta, namespace, name, compute, subresource=subresource, dry_run=dry_run,
                            field_validation=field_validation, warnings=warnings)

    def replace_object(self, resource: Any, namespace: str | None, name: str, obj: Mapping[str, Any], *,
                       subresource: str | None = None, dry_run: bool = False,
                       field_validation: str | None = None, warnings: list[str] | None = None) -> dict[str, Any]:
        meta = self.resolve(resource)
        if not isinstance(obj, Mapping):
            raise ApiError(400, 'BadRequest', 'the body of the request was in an unknown format')
        return self._update(meta, namespace, name, lambda old: copy.deepcopy(dict(obj)), subresource=subresource,
                            dry_run=dry_run, field_validation=field_validation, warnings=warnings)

    def delete_object(self, resource: Any, namespace: str | None, name: str, *,
                      propagation_policy: str | None = None, preconditions: Mapping[str, Any] | None = None,
                      dry_run: bool = False, warnings: list[str] | None = None) -> dict[str, Any]:
        """Delete an object; returns the response body (the object if it lingers, else a Status)."""
        meta = self.resolve(resource)
        obj = self._live_or_404(meta, namespace, name)
        md = _meta_of(obj)
        for field, key in (('uid', 'uid'), ('resourceVersion', 'resourceVersion')):
            expected = (preconditions or {}).get(field)
            if expected and str(expected) != str(md.get(key)):
                raise ApiError(409, 'Conflict',
                               f'Operation cannot be fulfilled on {meta.qualified} "{name}": Precondition failed: '
                               f'{field} in precondition: {expected}, {field} in object meta: {md.get(key)}',
                               {'name': name, 'group': meta.group, 'kind': meta.plural})
        if propagation_policy not in (None, '', 'Background', 'Foreground', 'Orphan'):
            raise ApiError(422, 'Invalid', f'propagationPolicy: Unsupported value: "{propagation_policy}": '
                           'supported values: "Foreground", "Background", "Orphan"')
        policy = propagation_policy or None
        if policy is None:
            if meta.group == 'batch' and meta.plural == 'jobs':
                policy = self.job_default_propagation
                if policy == 'Orphan' and warnings is not None:
                    warnings.append(JOB_ORPHAN_WARNING)
            else:
                policy = 'Background'
        if md.get('deletionTimestamp'):
            return copy.deepcopy(obj)
        if dry_run:
            return copy.deepcopy(obj)
        uid = md.get('uid', '')
        if meta.group == '' and meta.plural == 'namespaces':
            for m, o in list(self._iter_live()):
                if m.namespaced and _meta_of(o).get('namespace') == name:
                    try:
                        self.delete_object(m, name, _meta_of(o)['name'], propagation_policy='Background')
                    except ApiError:
                        pass
            obj = self._live_or_404(meta, namespace, name)
        if meta.group == 'apiextensions.k8s.io' and meta.plural == 'customresourcedefinitions':
            self._unregister_crd(obj)
        if policy == 'Orphan':
            self._orphan_dependents(uid)
        if policy == 'Foreground':
            new = copy.deepcopy(obj)
            nmd = new['metadata']
            nmd['deletionTimestamp'] = _util.now_rfc3339()
            nmd['deletionGracePeriodSeconds'] = 0
            nmd['finalizers'] = list(nmd.get('finalizers') or []) + ['foregroundDeletion']
            self._pending_policy[uid] = 'Background'
            self._commit(meta, obj, new)
            for dm, dep in self._dependents(uid):
                try:
                    self.delete_object(dm, _meta_of(dep).get('namespace'), _meta_of(dep)['name'], propagation_policy='Foreground')
                except ApiError:
                    pass
            self._check_foreground(uid)
            current = self._live(meta, namespace, name)
            return copy.deepcopy(current) if current is not None else self._deleted_status(meta, obj)
        if md.get('finalizers'):
            new = copy.deepcopy(obj)
            new['metadata']['deletionTimestamp'] = _util.now_rfc3339()
            new['metadata']['deletionGracePeriodSeconds'] = 0
            self._pending_policy[uid] = policy
            self._commit(meta, obj, new)
            current = self._live(meta, namespace, name)
            return copy.deepcopy(current) if current is not None else self._deleted_status(meta, obj)
        final = copy.deepcopy(obj)
        final['metadata']['resourceVersion'] = str(self._next_rv())
        self._pending_policy[uid] = policy
        self._purge(meta, final)
        if meta.group == '' and meta.plural == 'pods':
            return final
        return self._deleted_status(meta, obj)

    @staticmethod
    def _deleted_status(meta: ResourceMeta, obj: Mapping[str, Any]) -> dict[str, Any]:
        md = _meta_of(obj)
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Success',
                'details': {'name': md.get('name'), 'group': meta.group, 'kind': meta.plural, 'uid': md.get('uid')}}

    # -----------------------------------------------------------------------------------------
    # Updates, GC

    def _update(self, meta: ResourceMeta, namespace: str | None, name: str,
                compute: Callable[[dict[str, Any]], Any], *, subresource: str | None,
                dry_run: bool = False, field_validation: str | None = None,
                warnings: list[str] | None = None) -> dict[str, Any]:
        if subresource not in (None, 'status'):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if subresource == 'status' and 'status' not in meta.subresources:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        old = copy.deepcopy(self._live_or_404(meta, namespace, name))
        candidate = compute(copy.deepcopy(old))
        if not isinstance(candidate, dict):
            raise ApiError(400, 'BadRequest', 'the resulting object is not a JSON object')
        cmd = candidate.get('metadata')
        if cmd is not None and not isinstance(cmd, dict):
            raise ApiError(400, 'BadRequest', 'metadata must be an object')
        crv = (cmd or {}).get('resourceVersion')
        if crv not in (None, '') and str(crv) != str(_meta_of(old).get('resourceVersion')):
            raise ApiError(409, 'Conflict',
                           f'Operation cannot be fulfilled on {meta.qualified} "{name}": the object has been modified; '
                           'please apply your changes to the latest version and try again',
                           {'name': name, 'group': meta.group, 'kind': meta.plural})
        if subresource == 'status':
            new = copy.deepcopy(old)
            if 'status' in candidate:
                new['status'] = candidate['status']
            else:
                new.pop('status', None)
        else:
            new = candidate
            if 'status' in meta.subresources:
                if 'status' in old:
                    new['status'] = copy.deepcopy(old['status'])
                else:
                    new.pop('status', None)
            if new.get('kind') not in (None, '', meta.kind):
                raise ApiError(400, 'BadRequest', f"the kind of the object ({new.get('kind')}) does not match the resource ({meta.kind})")
            new['kind'] = meta.kind
            new['apiVersion'] = meta.api_version
            nmd = new.get('metadata')
            if not isinstance(nmd, dict):
                nmd = new['metadata'] = {}
            if nmd.get('name') not in (None, '', name):
                raise ApiError(400, 'BadRequest', f"the name of the object ({nmd.get('name')}) does not match the name on the URL ({name})")
            if meta.namespaced and nmd.get('namespace') not in (None, '', _meta_of(old).get('namespace')):
                raise ApiError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
            omd = _meta_of(old)
            for field in ('name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
                          'deletionGracePeriodSeconds', 'generation', 'selfLink'):
                if field in omd:
                    nmd[field] = omd[field]
                else:
                    nmd.pop(field, None)
            if omd.get('deletionTimestamp'):
                added = set(nmd.get('finalizers') or []) - set(omd.get('finalizers') or [])
                if added:
                    raise self._invalid(meta, name, [('metadata.finalizers', 'FieldValueForbidden',
                                                      'Forbidden: no new finalizers can be added if the object is being deleted, '
                                                      f'found new finalizers {json.dumps(sorted(added))}')])
            self._default_builtin(meta, new, old)
        new.setdefault('metadata', {})['resourceVersion'] = _meta_of(old).get('resourceVersion')
        self._prune_default_validate(meta, new, old, field_validation=field_validation, warnings=warnings)
        if dry_run:
            return new
        return self._commit(meta, old, new)

    def _commit(self, meta: ResourceMeta, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Store a modified object: no-ops are skipped; generation/rv bumped; deletion completed."""
        if _comparable(new) == _comparable(old):
            return copy.deepcopy(old)
        nmd = new['metadata']
        omd = _meta_of(old)
        generation = int(omd.get('generation') or 1)
        if _spec_part(new) != _spec_part(old) or (nmd.get('deletionTimestamp') and not omd.get('deletionTimestamp')):
            generation += 1
        nmd['generation'] = generation
        nmd['resourceVersion'] = str(self._next_rv())
        if nmd.get('deletionTimestamp') and not nmd.get('finalizers'):
            nmd.pop('finalizers', None)
            self._purge(meta, new)
            return copy.deepcopy(new)
        self._store_update(meta, old, new)
        return copy.deepcopy(new)

    def _purge(self, meta: ResourceMeta, final: dict[str, Any]) -> None:
        """Really remove an object (its final state carries a fresh rv), then collect garbage."""
        md = final['metadata']
        key = self._key(meta, md.get('namespace'), md['name'])
        self.objects[key].history.append(final)
        self.objects[key].delete()
        uid = md.get('uid', '')
        self._uids.pop(uid, None)
        self._emit(meta, 'DELETED', copy.deepcopy(final), None)
        policy = self._pending_policy.pop(uid, 'Background')
        if policy == 'Orphan':
            self._orphan_dependents(uid)
        else:
            for dm, dep in self._dependents(uid):
                dmd = _meta_of(dep)
                refs = dmd.get('ownerReferences') or []
                others_alive = [r for r in refs if r.get('uid') != uid and r.get('uid') in self._uids]
                if others_alive:
                    self._drop_owner_ref(dm, dep, uid)
                else:
                    try:
                        self.delete_object(dm, dmd.get('namespace'), dmd['name'], propagation_policy='Background')
                    except ApiError:
                        pass
        for ref in md.get('ownerReferences') or []:
            self._check_foreground(ref.get('uid', ''))

    def _dependents(self, uid: str) -> list[tuple[ResourceMeta, dict[str, Any]]]:
        if not uid:
            return []
        return [
            (m, o) for m, o in self._iter_live()
            if any(ref.get('uid') == uid for ref in _meta_of(o).get('ownerReferences') or [])
        ]

    def _drop_owner_ref(self, meta: ResourceMeta, obj: dict[str, Any], uid: str) -> None:
        new = copy.deepcopy(obj)
        refs = [r for r in new['metadata'].get('ownerReferences') or [] if r.get('uid') != uid]
        if refs:
            new['metadata']['ownerReferences'] = refs
        else:
            new['metadata'].pop('ownerReferences', None)
        self._commit(meta, obj, new)

    def _orphan_dependents(self, uid: str) -> None:
        for dm, dep in self._dependents(uid):
            self._drop_owner_ref(dm, dep, uid)

    def _check_foreground(self, uid: str) -> None:
        key = self._uids.get(uid)
        if key is None:
            return
        meta = self._meta(key[0])
        obj = self._live(meta, key[1], key[2]) if meta is not None else None
        if meta is None or obj is None:
            return
        md = _meta_of(obj)
        if not md.get('deletionTimestamp') or 'foregroundDeletion' not in (md.get('finalizers') or []):
            return
        if self._dependents(uid):
            return
        new = copy.deepcopy(obj)
        fins = [f for f in new['metadata'].get('finalizers') or [] if f != 'foregroundDeletion']
        if fins:
            new['metadata']['finalizers'] = fins
        else:
            new['metadata'].pop('finalizers', None)
        self._commit(meta, obj, new)

    def _unregister_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd.get('spec') or {}
        for version in spec.get('versions') or []:
            res = references.resource(spec.get('group'), version.get('name'), (spec.get('names') or {}).get('plural'))
            meta = self._meta(res)
            if meta is None:
                continue
            for m, o in list(self._iter_live(meta)):
                final = copy.deepcopy(o)
                final['metadata']['resourceVersion'] = str(self._next_rv())
                self._purge(m, final)
            if res in self.resources:
                del self.resources[res]
            self._metas.pop(res, None)

    # -----------------------------------------------------------------------------------------
    # Defaulting & validation

    def _invalid(self, meta: ResourceMeta, name: str, causes: Sequence[tuple[str, str, str]]) -> ApiError:
        texts = [f'{field}: {message}' if field else message for field, _, message in causes]
        joined = texts[0] if len(texts) == 1 else '[' + ', '.join(texts) + ']'
        return ApiError(422, 'Invalid', f'{meta.kind_qualified} "{name}" is invalid: {joined}', {
            'name': name, 'group': meta.group, 'kind': meta.kind,
            'causes': [{'reason': reason, 'message': message, 'field': field} for field, reason, message in causes],
        })

    def _invalid_generic(self, meta: ResourceMeta, name: str, message: str) -> ApiError:
        return ApiError(422, 'Invalid', message, {'name': name, 'group': meta.group, 'kind': meta.kind})

    def _default_builtin(self, meta: ResourceMeta, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        md = obj['metadata']
        core, group, plural = meta.group == '', meta.group, meta.plural
        if core and plural == 'secrets':
            _util.normalize_secret(obj)
        if old is not None:
            return
        if core and plural == 'namespaces':
            md.setdefault('labels', {})['kubernetes.io/metadata.name'] = md['name']
            obj.setdefault('spec', {}).setdefault('finalizers', ['kubernetes'])
            obj['status'] = {'phase': 'Active'}
        elif core and plural == 'pods':
            spec = obj.setdefault('spec', {})
            spec.setdefault('restartPolicy', 'Always')
            spec.setdefault('terminationGracePeriodSeconds', 30)
            spec.setdefault('dnsPolicy', 'ClusterFirst')
            spec.setdefault('schedulerName', 'default-scheduler')
            obj['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}
        elif group == 'batch' and plural == 'jobs':
            spec = obj.setdefault('spec', {})
            spec.setdefault('parallelism', 1)
            spec.setdefault('completions', 1)
            spec.setdefault('backoffLimit', 6)
            spec.setdefault('completionMode', 'NonIndexed')
            spec.setdefault('suspend', False)
            spec.setdefault('podReplacementPolicy', 'TerminatingOrFailed')
            tmpl = spec.setdefault('template', {})
            tmeta = tmpl.setdefault('metadata', {}) or {}
            tmpl['metadata'] = tmeta
            user_labels = dict(tmeta.get('labels') or {})
            if not md.get('labels') and user_labels:
                md['labels'] = dict(user_labels)
            uid = md['uid']
            gen_labels = {
                'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': md['name'],
                'controller-uid': uid, 'job-name': md['name'],
            }
            tmeta['labels'] = {**user_labels, **gen_labels}
            if not spec.get('selector'):
                spec['selector'] = {'matchLabels': {'batch.kubernetes.io/controller-uid': uid}}
            tspec = tmpl.setdefault('spec', {})
            tspec.setdefault('terminationGracePeriodSeconds', 30)
            tspec.setdefault('dnsPolicy', 'ClusterFirst')
            tspec.setdefault('schedulerName', 'default-scheduler')
            obj['status'] = {}

    def _validate_builtin(self, meta: ResourceMeta, obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, str, str]]:
        core, group, plural = meta.group == '', meta.group, meta.plural
        causes: list[tuple[str, str, str]] = []
        md = obj['metadata']
        name_kind = 'label' if core and plural in ('namespaces', 'services') else 'subdomain'
        causes += _util.validate_metadata(md, name_kind=name_kind, max_name=63 if name_kind == 'label' else 253)

        def check_containers(pod_spec: Mapping[str, Any], prefix: str) -> None:
            containers = pod_spec.get('containers') or []
            if not containers:
                causes.append((f'{prefix}.containers', 'FieldValueRequired', 'Required value'))
            for i, c in enumerate(containers):
                if not (c or {}).get('name'):
                    causes.append((f'{prefix}.containers[{i}].name', 'FieldValueRequired', 'Required value'))
                if not (c or {}).get('image'):
                    causes.append((f'{prefix}.containers[{i}].image', 'FieldValueRequired', 'Required value'))
                for j, env in enumerate((c or {}).get('env') or []):
                    if not (env or {}).get('name'):
                        causes.append((f'{prefix}.containers[{i}].env[{j}].name', 'FieldValueRequired', 'Required value'))

        if core and plural == 'pods':
            check_containers(obj.get('spec') or {}, 'spec')
        if group == 'batch' and plural == 'jobs':
            name = md.get('name') or ''
            if len(name) > 63:
                causes.append(('spec.template.labels', 'FieldValueInvalid',
                               f'Invalid value: {json.dumps(name)}: must be no more than 63 characters'))
            tspec = ((obj.get('spec') or {}).get('template') or {}).get('spec') or {}
            check_containers(tspec, 'spec.template.spec')
            rp = tspec.get('restartPolicy')
            if rp is None:
                causes.append(('spec.template.spec.restartPolicy', 'FieldValueRequired', 'Required value: valid values: "OnFailure", "Never"'))
            elif rp not in ('OnFailure', 'Never'):
                causes.append(('spec.template.spec.restartPolicy', 'FieldValueNotSupported',
                               f'Unsupported value: {json.dumps(rp)}: supported values: "OnFailure", "Never"'))
            if old is not None:
                for field in ('template', 'selector', 'completionMode'):
                    if (obj.get('spec') or {}).get(field) != (old.get('spec') or {}).get(field):
                        causes.append((f'spec.{field}', 'FieldValueInvalid', 'Invalid value: field is immutable'))
        return causes

    def _prune_default_validate(self, meta: ResourceMeta, obj: dict[str, Any], old: dict[str, Any] | None, *,
                                field_validation: str | None, warnings: list[str] | None) -> None:
        name = _meta_of(obj).get('name') or ''
        if meta.is_crd and meta.schema:
            pruned_obj, pruned = _util.prune_and_default(obj, meta.schema, root=True)
            obj.clear()
            obj.update(pruned_obj)
            if pruned:
                if (field_validation or '').lower() == 'strict':
                    raise ApiError(400, 'BadRequest', 'strict decoding error: ' + ', '.join(f'unknown field "{p}"' for p in pruned))
                if (field_validation or 'warn').lower() == 'warn' and warnings is not None:
                    warnings.extend(f'unknown field "{p}"' for p in pruned)
        causes = self._validate_builtin(meta, obj, old)
        if meta.validator is not None:
            errors = sorted(meta.validator.iter_errors({k: v for k, v in obj.items() if k != 'metadata'}),
                            key=lambda e: [str(p) for p in e.absolute_path])
            causes += _util.schema_error_causes(errors)
        if causes:
            raise self._invalid(meta, name, causes)

    # -----------------------------------------------------------------------------------------
    # Pod logs

    def append_pod_log(self, namespace: str, name: str, data: bytes | str, container: str | None = None) -> None:
        """Append to a pod's log (thread-safe; what ``kubectl logs`` will see). With
        ``container``, to that container's own log too (``?container=`` serves it)."""
        chunk = data.encode() if isinstance(data, str) else bytes(data)
        with self._log_lock:
            self.pod_logs.setdefault((namespace, name), bytearray()).extend(chunk)
            if container is not None:
                self.container_logs.setdefault((namespace, name, container), bytearray()).extend(chunk)

    def container_log(self, namespace: str, name: str, container: str) -> str:
        with self._log_lock:
            return bytes(self.container_logs.get((namespace, name, container), b'')).decode('utf-8', 'replace')

    def pod_log(self, namespace: str, name: str) -> str:
        with self._log_lock:
            return bytes(self.pod_logs.get((namespace, name), b'')).decode('utf-8', 'replace')

    # -----------------------------------------------------------------------------------------
    # RBAC simulation

    def deny(self, verb: str, resource: str, namespace: str | None = None, *, user: str | None = None) -> _Denial:
        """
        Answer 403 Forbidden to ``verb`` (get/list/watch/create/update/patch/delete/
        deletecollection or ``*``) on ``resource`` (``jobs``, ``jobs.batch``, ``pods/log``,
        ``amptasks.ampx.dev/status``, ``*``) — in ``namespace`` (None: everywhere).
        """
        sub = None
        if '/' in resource:
            resource, sub = resource.split('/', 1)
        group: str | None = None
        if '.' in resource:
            resource, group = resource.split('.', 1)
        plural = f'{resource}/{sub}' if sub else resource
        denial = _Denial(verb=verb, group=group, plural=plural, namespace=namespace, user=user)
        self._denials.append(denial)
        return denial

    def allow(self, denial: _Denial | None = None) -> None:
        """Lift one denial, or all of them."""
        if denial is None:
            self._denials.clear()
        elif denial in self._denials:
            self._denials.remove(denial)

    def _user_of(self, request: rendering.Request) -> str:
        auth = request.headers.get('Authorization') or request.headers.get('authorization') or ''
        if auth.lower().startswith('bearer '):
            return self.tokens.get(auth[7:].strip(), self.default_user)
        return self.anonymous_user or self.default_user

    def _authorize(self, request: rendering.Request, verb: str, meta: ResourceMeta, sub: str | None,
                   namespace: str | None, name: str | None) -> None:
        user = self._user_of(request)
        allowed = self.rbac.get(user)
        if allowed is not None:
            what = f'{meta.plural}/{sub}' if sub else meta.plural
            # (group, resource, verb) allows any object; (group, resource, verb, name) only that
            # one (a rule with resourceNames: never a list, watch or create, as in RBAC)
            if (meta.group, what, verb) not in allowed and \
                    (name is None or (meta.group, what, verb, name) not in allowed):
                scope = f'in the namespace "{namespace}"' if namespace else 'at the cluster scope'
                raise ApiError(403, 'Forbidden',
                               f'{meta.qualified} is forbidden: User "{user}" cannot {verb} resource '
                               f'"{what}" in API group "{meta.group}" {scope}',
                               {'group': meta.group, 'kind': meta.plural})
            self.rbac_used.add((user, meta.group, what, verb))
        for denial in self._denials:
            if denial.matches(user, verb, meta, sub, namespace):
                what = f'{meta.plural}/{sub}' if sub else meta.plural
                target = f'{meta.qualified} "{name}"' if name else meta.qualified
                scope = f'in the namespace "{namespace}"' if namespace else 'at the cluster scope'
                raise ApiError(403, 'Forbidden',
                               f'{target} is forbidden: User "{user}" cannot {verb} resource "{what}" '
                               f'in API group "{meta.group}" {scope}',
                               {'name': name, 'group': meta.group, 'kind': meta.plural} if name else
                               {'group': meta.group, 'kind': meta.plural})

    # -----------------------------------------------------------------------------------------
    # HTTP layer

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        try:
            request = await self._parse_request(raw_request)
        except Exception as e:  # pragma: no cover
            return self._status_response(ApiError(400, 'BadRequest', f'cannot parse the request: {e!r}'))
        self._requests.append(request)
        try:
            return await self._handle(request)
        except ApiError as e:
            return self._status_response(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.server_errors.append(e)
            logger.exception('The emulator failed to serve %s %s', request.method, request.url)
            return self._status_response(ApiError(500, 'InternalError', f'{e!r}', {'causes': [
                {'message': traceback.format_exc()}]}))

    async def _parse_request(self, raw: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw.read()
        text = body.decode('utf-8', 'replace')
        ctype = raw.headers.get('Content-Type', '')
        data: Any = None
        if body:
            try:
                data = yaml.safe_load(text) if 'yaml' in ctype else json.loads(text)
            except Exception:
                data = None
        parsed = self._split_path(raw.path)
        resource = None
        action = None
        if parsed is not None:
            group, version, ns, plural, name, sub = parsed
            resource = references.resource(group=group, version=version, plural=plural)
            pp = parsing.ParsedPath(group, version, plural, ns, name, sub)
            action = parsing.guess_k8s(pp, enums.method(raw.method), dict(raw.query))
        else:
            group = version = ns = plural = name = sub = None
        return rendering.Request(
            id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
            params=dict(raw.query), headers=dict(raw.headers), cookies=dict(raw.cookies),
            body=body, text=text, data=data, action=action, resource=resource,
            namespace=ns, name=name, subresource=sub,
        )

    @staticmethod
    def _split_path(path: str) -> tuple[str, str, str | None, str | None, str | None, str | None] | None:
        parts = [p for p in path.split('/') if p]
        if len(parts) >= 2 and parts[0] == 'api':
            group, version, rest = '', parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == 'apis':
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 3 and rest[0] == 'namespaces' and not (group == '' and len(rest) == 3 and rest[2] in ('status', 'finalize')):
            ns, rest = rest[1], rest[2:]
        plural = rest[0] if rest else None
        name = rest[1] if len(rest) > 1 else None
        sub = '/'.join(rest[2:]) or None
        return group, version, ns, plural, name, sub

    async def _try_user_reactions(self, request: rendering.Request) -> aiohttp.web.StreamResponse | None:
        payloads = [p for p in self._payloads if not any(x == -math.inf for x in p.priorities)]
        if not payloads:
            return None
        priorities = [p.priorities for p in payloads]
        max_length = max(len(p) for p in priorities) if priorities else 0
        keys = [tuple(-x for x in p) + (0,) * (max_length - len(p)) for p in priorities]
        for index in sorted(range(len(payloads)), key=lambda i: keys[i]):
            payload = payloads[index]
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        return None

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        response = await self._try_user_reactions(request)
        if response is not None:
            return response
        return await self._route(request)

    @staticmethod
    def _json(body: Any, status: int = 200, warnings: Sequence[str] = ()) -> aiohttp.web.Response:
        response = aiohttp.web.json_response(body, status=status)
        for warning in warnings:
            response.headers.add('Warning', f'299 - {json.dumps(warning)}')
        return response

    def _status_response(self, error: ApiError) -> aiohttp.web.Response:
        response = self._json(error.status(), status=error.code)
        for key, value in error.headers.items():
            response.headers[key] = value
        return response

    async def _route(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path.rstrip('/') or '/'
        if path == '/':
            return self._json({'paths': self._root_paths()})
        if path == '/version':
            return self._json({
                'major': '1', 'minor': '32', 'gitVersion': 'v1.32.4-kubeharness', 'gitCommit': '0' * 40,
                'gitTreeState': 'clean', 'buildDate': '2025-01-01T00:00:00Z', 'goVersion': 'go1.23.0',
                'compiler': 'gc', 'platform': 'linux/amd64',
            })
        if path in ('/healthz', '/livez', '/readyz'):
            return aiohttp.web.Response(text='ok')
        if path == '/openapi/v3':
            return self._json({'paths': {
                gv: {'serverRelativeURL': f'/openapi/v3/{gv}?hash={self._openapi_hash(gv)}'}
                for gv in self._openapi_gvs()}})
        if path.startswith('/openapi/v3/'):
            gv = path[len('/openapi/v3/'):]
            if gv not in self._openapi_gvs():
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            return self._json(self._openapi_doc(gv))
        if path == '/api':
            return self._json({'kind': 'APIVersions', 'versions': ['v1'],
                               'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': request.url.host or ''}]})
        if path == '/apis':
            return self._json({'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': self._api_groups()})
        parts = [p for p in path.split('/') if p]
        if len(parts) == 2 and parts[0] == 'apis':
            for group in self._api_groups():
                if group['name'] == parts[1]:
                    return self._json({'kind': 'APIGroup', 'apiVersion': 'v1', **group})
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        parsed = self._split_path(path)
        if parsed is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        group, version, ns, plural, name, sub = parsed
        if plural is None:
            resources = self._api_resources(group, version)
            if resources is None:
                raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
            return self._json({'kind': 'APIResourceList', 'apiVersion': 'v1',
                               'groupVersion': f'{group}/{version}' if group else version, 'resources': resources})
        meta = self._meta(references.resource(group, version, plural))
        if meta is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        return await self._serve_resource(request, meta, ns, name, sub)

    # --- discovery

    def _openapi_gvs(self) -> list[str]:
        gvs: list[str] = []
        for res in self.resources:
            gv = f'apis/{res.group}/{res.version}' if res.group else f'api/{res.version}'
            if gv not in gvs:
                gvs.append(gv)
        return gvs

    def _openapi_hash(self, gv: str) -> str:
        import hashlib
        names = sorted(f'{r.group}/{r.version}/{r.plural}' for r in self.resources)
        return hashlib.sha256(f'{gv}|{names}'.encode()).hexdigest()[:16].upper()

    def _openapi_doc(self, gv: str) -> dict[str, Any]:
        """A minimal OpenAPI v3 document: enough for kubectl to see server-side field validation."""
        paths: dict[str, Any] = {}
        for res in self.resources:
            if (f'apis/{res.group}/{res.version}' if res.group else f'api/{res.version}') != gv:
                continue
            meta = self._meta(res)
            assert meta is not None
            prefix = f'/{gv}/namespaces/{{namespace}}' if meta.namespaced else f'/{gv}'
            gvk = {'group': meta.group, 'version': meta.version, 'kind': meta.kind}
            params = [{'name': n, 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}}
                      for n in ('dryRun', 'fieldManager', 'fieldValidation')]
            op = {'x-kubernetes-group-version-kind': gvk, 'parameters': params,
                  'responses': {'200': {'description': 'OK'}}}
            paths[f'{prefix}/{meta.plural}/{{name}}'] = {
                'get': {'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': gvk,
                        'responses': {'200': {'description': 'OK'}}},
                'put': {**op, 'x-kubernetes-action': 'put'},
                'patch': {**op, 'x-kubernetes-action': 'patch'},
            }
            paths[f'{prefix}/{meta.plural}'] = {'post': {**op, 'x-kubernetes-action': 'post'}}
        return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes (kubeharness)', 'version': 'v1.32.4'},
                'paths': paths, 'components': {'schemas': {}}}

    def _root_paths(self) -> list[str]:
        paths = {'/api', '/api/v1', '/apis', '/version', '/healthz', '/livez', '/readyz'}
        for res in self.resources:
            if res.group:
                paths.add(f'/apis/{res.group}')
                paths.add(f'/apis/{res.group}/{res.version}')
        return sorted(paths)

    def _api_groups(self) -> list[dict[str, Any]]:
        groups: dict[str, list[str]] = {}
        for res in self.resources:
            if not res.group:
                continue
            versions = groups.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version or '')
        result = []
        for group, versions in groups.items():
            gvs = [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions]
            result.append({'name': group, 'versions': gvs, 'preferredVersion': gvs[0]})
        return result

    def _api_resources(self, group: str, version: str) -> list[dict[str, Any]] | None:
        result = []
        found = False
        for res in self.resources:
            if res.group != group or res.version != version:
                continue
            found = True
            meta = self._meta(res)
            assert meta is not None
            entry: dict[str, Any] = {
                'name': meta.plural, 'singularName': meta.singular, 'namespaced': meta.namespaced,
                'kind': meta.kind, 'verbs': meta.verbs,
            }
            if meta.shortnames:
                entry['shortNames'] = sorted(meta.shortnames)
            if meta.categories:
                entry['categories'] = sorted(meta.categories)
            result.append(entry)
            for sub in sorted(meta.subresources):
                verbs = ['get', 'patch', 'update'] if sub in ('status', 'scale') else ['get']
                result.append({'name': f'{meta.plural}/{sub}', 'singularName': '', 'namespaced': meta.namespaced,
                               'kind': meta.kind, 'verbs': verbs})
        if not found and group != '':
            return None
        return result

    # --- resources

    async def _serve_resource(self, request: rendering.Request, meta: ResourceMeta, ns: str | None,
                              name: str | None, sub: str | None) -> aiohttp.web.StreamResponse:
        method = request.method.upper()
        params = request.params
        is_watch = method == 'GET' and params.get('watch') in ('true', '1', 'True')
        verb = (
            'watch' if is_watch else
            'get' if method == 'GET' and name else
            'list' if method == 'GET' else
            'create' if method == 'POST' else
            'update' if method == 'PUT' else
            'patch' if method == 'PATCH' else
            'delete' if method == 'DELETE' and name else
            'deletecollection' if method == 'DELETE' else
            method.lower()
        )
        if ns is not None and not meta.namespaced:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if name is None and sub is not None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        self._authorize(request, verb, meta, sub, ns, name)
        if meta.namespaced and name is not None and ns is None:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')

        ctype = request.headers.get('Content-Type', '').split(';')[0].strip().lower()
        if method in ('POST', 'PUT', 'PATCH') and request.body and ('protobuf' in ctype or 'cbor' in ctype):
            # client-go (kubectl) falls back to JSON on 415 — we speak JSON only.
            raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - '
                           'accepted media types include: application/json, application/yaml')
        dry_run = bool(params.get('dryRun'))
        field_validation = params.get('fieldValidation')
        warnings: list[str] = []
        accept = request.headers.get('Accept', '')

        if sub is not None and sub not in ('status', 'log'):
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')
        if sub == 'log':
            if meta.group != '' or meta.plural != 'pods' or method != 'GET':
                raise ApiError(404 if method == 'GET' else 405, 'NotFound' if method == 'GET' else 'MethodNotAllowed',
                               'the server could not find the requested resource')
            assert name is not None and ns is not None
            return await self._serve_log(request, meta, ns, name)
        if sub == 'status' and 'status' not in meta.subresources:
            raise ApiError(404, 'NotFound', 'the server could not find the requested resource')

        if method == 'GET':
            if is_watch:
                return await self._serve_watch(request, meta, ns, name)
            if name is not None:
                obj = self._live_or_404(meta, ns, name)
                return self._json(self._render_single(meta, obj, accept, params))
            return self._json(self._render_list(meta, ns, params, accept))
        if method == 'POST':
            if name is not None:
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            created = self.create_object(meta, request.data, ns, dry_run=dry_run,
                                         field_validation=field_validation, warnings=warnings)
            return self._json(created, 201, warnings)
        if method == 'PUT':
            if name is None:
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            updated = self.replace_object(meta, ns, name, request.data, subresource=sub, dry_run=dry_run,
                                          field_validation=field_validation, warnings=warnings)
            return self._json(updated, 200, warnings)
        if method == 'PATCH':
            if name is None:
                raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
            patch_type = {
                'application/merge-patch+json': 'merge',
                'application/strategic-merge-patch+json': 'strategic',
                'application/json-patch+json': 'json',
                'application/apply-patch+yaml': 'apply',
                'application/apply-patch+cbor': 'apply',
            }.get(ctype)
            if patch_type is None:
                raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: '
                               'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml')
            if patch_type == 'strategic' and meta.is_crd:
                raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types '
                               'include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml')
            if request.data is None and request.body.strip():
                raise ApiError(400, 'BadRequest', 'the body of the request could not be decoded')
            if patch_type == 'apply' and self._live(meta, ns, name) is None:
                body = dict(request.data or {})
                body.setdefault('metadata', {})['name'] = name
                created = self.create_object(meta, body, ns, dry_run=dry_run, field_validation=field_validation, warnings=warnings)
                return self._json(created, 201, warnings)
            patched = self.patch_object(meta, ns, name, request.data, patch_type=patch_type, subresource=sub, dry_run=dry_run,
                                        field_validation=field_validation, warnings=warnings)
            return self._json(patched, 200, warnings)
        if method == 'DELETE':
            options = request.data if isinstance(request.data, Mapping) else {}
            policy = params.get('propagationPolicy') or options.get('propagationPolicy')
            if policy is None and 'orphanDependents' in options:
                policy = 'Orphan' if options['orphanDependents'] else 'Background'
            if policy is None and params.get('orphanDependents') in ('true', 'false'):
                policy = 'Orphan' if params['orphanDependents'] == 'true' else 'Background'
            dry_run = dry_run or bool(options.get('dryRun'))
            if name is not None:
                result = self.delete_object(meta, ns, name, propagation_policy=policy,
                                            preconditions=options.get('preconditions'), dry_run=dry_run, warnings=warnings)
                lingering = result.get('kind') != 'Status' and self._live(meta, ns, name) is not None and not dry_run
                return self._json(result, 202 if lingering else 200, warnings)
            items = []
            for obj in self.list_objects(meta, ns, label_selector=params.get('labelSelector'), field_selector=params.get('fieldSelector')):
                md = obj['metadata']
                try:
                    self.delete_object(meta, md.get('namespace'), md['name'], propagation_policy=policy, dry_run=dry_run, warnings=warnings)
                    items.append(obj)
                except ApiError:
                    pass
            return self._json({'kind': meta.list_kind, 'apiVersion': meta.api_version,
                               'metadata': {'resourceVersion': self.resource_version}, 'items': items}, 200, warnings)
        raise ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')

    # --- rendering of lists, tables, partial metadata

    def _render_list(self, meta: ResourceMeta, ns: str | None, params: Mapping[str, str], accept: str) -> dict[str, Any]:
        items = self.list_objects(meta, ns, label_selector=params.get('labelSelector'), field_selector=params.get('fieldSelector'))
        if 'as=Table' in accept:
            return self._table(meta, items, params.get('includeObject', 'Metadata'))
        if 'as=PartialObjectMetadataList' in accept:
            return {'kind': 'PartialObjectMetadataList', 'apiVersion': 'meta.k8s.io/v1',
                    'metadata': {'resourceVersion': self.resource_version},
                    'items': [self._partial(o) for o in items]}
        return {'kind': meta.list_kind, 'apiVersion': meta.api_version,
                'metadata': {'resourceVersion': self.resource_version}, 'items': items}

    def _render_single(self, meta: ResourceMeta, obj: dict[str, Any], accept: str, params: Mapping[str, str]) -> dict[str, Any]:
        if 'as=Table' in accept:
            return self._table(meta, [obj], params.get('includeObject', 'Metadata'))
        if 'as=PartialObjectMetadata' in accept:
            return self._partial(obj)
        return copy.deepcopy(obj)

    @staticmethod
    def _partial(obj: Mapping[str, Any]) -> dict[str, Any]:
        return {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': copy.deepcopy(_meta_of(obj))}

    def _columns(self, meta: ResourceMeta) -> list[tuple[dict[str, Any], Callable[[Mapping[str, Any]], Any]]]:
        def col(name: str, fn: Callable[[Mapping[str, Any]], Any], type_: str = 'string', priority: int = 0,
                description: str = '', format_: str = '') -> tuple[dict[str, Any], Callable[[Mapping[str, Any]], Any]]:
            definition = {'name': name, 'type': type_, 'format': format_, 'description': description, 'priority': priority}
            return definition, fn

        name_col = col('Name', lambda o: _meta_of(o).get('name'), format_='name',
                       description='Name must be unique within a namespace.')
        age_col = col('Age', lambda o: _util.age_of(_meta_of(o).get('creationTimestamp')),
                      description='CreationTimestamp is a timestamp representing the server time when this object was created.')
        if meta.is_crd and meta.printer_columns:
            cols = [name_col]
            for pc in meta.printer_columns:
                path = pc.get('jsonPath', '')
                if pc.get('type') == 'date':
                    fn = (lambda p: lambda o: _util.age_of(_util.get_path(o, p)) if _util.get_path(o, p) else '<unknown>')(path)
                    cols.append(col(pc['name'], fn, 'date', int(pc.get('priority', 0)), pc.get('description', '')))
                else:
                    fn = (lambda p: lambda o: _util.get_path(o, p))(path)
                    cols.append(col(pc['name'], fn, pc.get('type', 'string'), int(pc.get('priority', 0)), pc.get('description', '')))
            return cols
        if meta.group == '' and meta.plural == 'pods':
            def ready(o: Mapping[str, Any]) -> str:
                statuses = (o.get('status') or {}).get('containerStatuses') or []
                total = len((o.get('spec') or {}).get('containers') or [])
                return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"

            def status(o: Mapping[str, Any]) -> str:
                st = o.get('status') or {}
                for cs in st.get('containerStatuses') or []:
                    state = cs.get('state') or {}
                    if 'waiting' in state and state['waiting'].get('reason'):
                        return state['waiting']['reason']
                    if 'terminated' in state and st.get('phase') not in ('Succeeded', 'Failed'):
                        return state['terminated'].get('reason', 'Terminated')
                if _meta_of(o).get('deletionTimestamp'):
                    return 'Terminating'
                if st.get('phase') == 'Succeeded':
                    return 'Completed'
                if st.get('phase') == 'Failed':
                    return st.get('reason') or 'Error'
                return st.get('phase') or 'Pending'

            return [name_col, col('Ready', ready), col('Status', status),
                    col('Restarts', lambda o: sum(int(s.get('restartCount') or 0) for s in (o.get('status') or {}).get('containerStatuses') or []), 'integer'),
                    age_col]
        if meta.group == 'batch' and meta.plural == 'jobs':
            def job_status(o: Mapping[str, Any]) -> str:
                for c in (o.get('status') or {}).get('conditions') or []:
                    if c.get('type') in ('Complete', 'Failed') and c.get('status') == 'True':
                        return c['type']
                return 'Running' if (o.get('status') or {}).get('startTime') else 'Pending'

            return [name_col, col('Status', job_status),
                    col('Completions', lambda o: f"{(o.get('status') or {}).get('succeeded', 0)}/{(o.get('spec') or {}).get('completions', 1)}"),
                    age_col]
        if meta.group == '' and meta.plural == 'namespaces':
            return [name_col, col('Status', lambda o: (o.get('status') or {}).get('phase', '')), age_col]
        return [name_col, age_col]

    def _table(self, meta: ResourceMeta, objs: Sequence[dict[str, Any]], include_object: str = 'Metadata') -> dict[str, Any]:
        cols = self._columns(meta)
        rows = []
        for obj in objs:
            row: dict[str, Any] = {'cells': [fn(obj) for _, fn in cols]}
            if include_object == 'Object':
                row['object'] = copy.deepcopy(obj)
            elif include_object != 'None':
                row['object'] = self._partial(obj)
            rows.append(row)
        return {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1',
                'metadata': {'resourceVersion': self.resource_version},
                'columnDefinitions': [d for d, _ in cols], 'rows': rows}

    # --- streaming helpers

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def close_streams(self) -> None:
        """End all open watch and log-follow streams (done by KubeServer on exit)."""
        self._closing_event().set()
        for sub in list(self._subs):
            sub.queue.put_nowait(None)
        tasks = [t for t in self._stream_tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    @staticmethod
    async def _write_line(response: aiohttp.web.StreamResponse, payload: Any) -> None:
        await response.write(json.dumps(payload).encode() + b'\n')

    async def _serve_watch(self, request: rendering.Request, meta: ResourceMeta, ns: str | None,
                           name: str | None) -> aiohttp.web.StreamResponse:
        params = request.params
        try:
            lmatch = _util.parse_label_selector(params.get('labelSelector'))
            fmatch = _util.parse_field_selector(params.get('fieldSelector'))
        except _util.SelectorError as e:
            raise ApiError(400, 'BadRequest', str(e)) from None
        rv_param = params.get('resourceVersion') or ''
        send_initial = params.get('sendInitialEvents') == 'true'
        bookmarks = params.get('allowWatchBookmarks') == 'true'
        as_table = 'as=Table' in request.headers.get('Accept', '')
        try:
            timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None
        except ValueError:
            raise ApiError(400, 'BadRequest', 'invalid timeoutSeconds') from None
        sub = WatchSubscription(meta=meta, namespace=ns, name=name,
                                label_selector=params.get('labelSelector', ''), field_selector=params.get('fieldSelector', ''),
                                label_match=lmatch, field_match=fmatch,
                                user_agent=request.headers.get('User-Agent', ''))

        # Snapshot/replay and subscription happen atomically: nothing can slip in between.
        initial: list[dict[str, Any]] = []
        gone = False
        if rv_param in ('', '0') or send_initial:
            for _, obj in self._iter_live(meta):
                if sub._matches(obj):
                    initial.append({'type': 'ADDED', 'object': copy.deepcopy(obj)})
            initial.sort(key=lambda e: int(e['object']['metadata'].get('resourceVersion') or 0))
            if send_initial and bookmarks:
                initial.append({'type': 'BOOKMARK', 'object': {
                    'kind': meta.kind, 'apiVersion': meta.api_version,
                    'metadata': {'resourceVersion': self.resource_version,
                                 'annotations': {'k8s.io/initial-events-end': 'true'}}}})
        else:
            try:
                since = int(rv_param)
            except ValueError:
                raise ApiError(400, 'BadRequest', f'invalid resource version: {rv_param!r}') from None
            if since < self._log_floor:
                gone = True
                initial.append({'type': 'ERROR', 'object': {
                    'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                    'message': f'too old resource version: {since} ({self._log_floor + 1})',
                    'reason': 'Expired', 'code': 410}})
            else:
                for event in self._event_log:
                    if event.rv > since:
                        etype = sub.translate(event)
                        if etype is not None:
                            initial.append({'type': etype, 'object': copy.deepcopy(event.obj)})
        if not gone:
            self._subs.append(sub)

        task = asyncio.current_task()
        if task is not None:
            self._stream_tasks.add(task)
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'application/json'})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request._raw_request)  # type: ignore[arg-type]
            for event in initial:
                await self._write_line(response, self._watch_payload(meta, event, as_table))
            if gone:
                return response
            closing = self._closing_event()
            deadline = time.monotonic() + timeout if timeout is not None else None
            next_bookmark = time.monotonic() + self.bookmark_interval
            while not closing.is_set():
                now = time.monotonic()
                waits = [1.0]
                if deadline is not None:
                    if now >= deadline:
                        break
                    waits.append(deadline - now)
                if bookmarks:
                    waits.append(max(next_bookmark - now, 0.0))
                try:
                    event = await asyncio.wait_for(sub.queue.get(), timeout=max(min(waits), 0.001))
                except TimeoutError:
                    event = None
                    if bookmarks and time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + self.bookmark_interval
                        await self._write_line(response, {'type': 'BOOKMARK', 'object': {
                            'kind': meta.kind, 'apiVersion': meta.api_version,
                            'metadata': {'resourceVersion': self.resource_version}}})
                    continue
                if event is None:
                    break
                etype = sub.translate(event)
                if etype is not None:
                    await self._write_line(response, self._watch_payload(meta, {'type': etype, 'object': copy.deepcopy(event.obj)}, as_table))
            await response.write_eof()
        except ConnectionError:  # the client went away
            pass
        finally:
            if sub in self._subs:
                self._subs.remove(sub)
            if task is not None:
                self._stream_tasks.discard(task)
        return response

    def _watch_payload(self, meta: ResourceMeta, event: dict[str, Any], as_table: bool) -> dict[str, Any]:
        if as_table and event['type'] in ('ADDED', 'MODIFIED', 'DELETED'):
            return {'type': event['type'], 'object': self._table(meta, [event['object']])}
        return event

    async def _serve_log(self, request: rendering.Request, meta: ResourceMeta, ns: str, name: str) -> aiohttp.web.StreamResponse:
        params = request.params
        pod = self._live_or_404(meta, ns, name)
        spec = pod.get('spec') or {}
        containers = [c.get('name') for c in spec.get('containers') or []]
        all_containers = containers + [c.get('name') for c in spec.get('initContainers') or []]
        container = params.get('container')
        if container and container not in all_containers:
            raise ApiError(400, 'BadRequest', f'container {container} is not valid for pod {name}')
        if not container:
            if len(containers) > 1:
                raise ApiError(400, 'BadRequest', f'a container name must be specified for pod {name}, '
                               f'choose one of: [{" ".join(containers)}]')
            container = containers[0] if containers else ''
        key: tuple[str, ...] = (ns, name)
        logs: dict[Any, bytearray] = self.pod_logs
        with self._log_lock:
            if (ns, name, container) in self.container_logs:
                key, logs = (ns, name, container), self.container_logs
            has_log = key in logs
            data = bytes(logs.get(key, b''))
        if not has_log:
            status = pod.get('status') or {}
            reason = 'ContainerCreating' if status.get('phase', 'Pending') == 'Pending' else None
            for cs in status.get('containerStatuses') or []:
                waiting = (cs.get('state') or {}).get('waiting') or {}
                if cs.get('name') == container and waiting.get('reason'):
                    reason = waiting['reason']
            if reason is not None:
                raise ApiError(400, 'BadRequest', f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        if params.get('tailLines'):
            try:
                tail = int(params['tailLines'])
            except ValueError:
                raise ApiError(400, 'BadRequest', 'invalid tailLines') from None
            lines = data.splitlines(keepends=True)
            data = b''.join(lines[-tail:]) if tail > 0 else b''
        start = len(bytes(logs.get(key, b'')))
        if params.get('limitBytes'):
            data = data[:int(params['limitBytes'])]
        if params.get('follow') not in ('true', '1'):
            return aiohttp.web.Response(body=data, content_type='text/plain', charset='utf-8')

        task = asyncio.current_task()
        if task is not None:
            self._stream_tasks.add(task)
        response = aiohttp.web.StreamResponse(status=200, headers={'Content-Type': 'text/plain; charset=utf-8'})
        response.enable_chunked_encoding()
        uid = _meta_of(pod).get('uid')
        try:
            await response.prepare(request._raw_request)  # type: ignore[arg-type]
            if data:
                await response.write(data)
            offset = start
            closing = self._closing_event()
            while True:
                current = self._live(meta, ns, name)
                finished = (
                    current is None or _meta_of(current).get('uid') != uid or
                    (current.get('status') or {}).get('phase') in ('Succeeded', 'Failed') or
                    closing.is_set()
                )
                with self._log_lock:
                    chunk = bytes(logs.get(key, b''))[offset:]
                if chunk:
                    offset += len(chunk)
                    await response.write(chunk)
                if finished:
                    break
                await asyncio.sleep(self.log_poll_interval)
            await response.write_eof()
        except ConnectionError:  # the client went away
            pass
        finally:
            if task is not None:
                self._stream_tasks.discard(task)
        return response
