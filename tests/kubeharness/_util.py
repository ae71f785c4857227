"""Small pure helpers of the Kubernetes emulator: selectors, patches, schemas, names, times."""

from __future__ import annotations

import base64
import copy
import datetime
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# ---------------------------------------------------------------------------------------------
# Time


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it: RFC3339, seconds, ``Z``."""
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_rfc3339(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except (ValueError, AttributeError, TypeError):
        return None


def human_duration(seconds: float) -> str:
    """Mimic ``k8s.io/apimachinery/pkg/util/duration.HumanDuration`` (roughly)."""
    s = int(max(seconds, 0))
    if s < 60 * 2:
        return f'{s}s'
    m = s // 60
    if m < 10:
        return f'{m}m{s % 60}s' if s % 60 else f'{m}m'
    if m < 60 * 3:
        return f'{m}m'
    h = m // 60
    if h < 8:
        return f'{h}h{m % 60}m' if m % 60 else f'{h}h'
    if h < 48:
        return f'{h}h'
    d = h // 24
    if d < 8:
        return f'{d}d{h % 24}h' if h % 24 else f'{d}d'
    if d < 365 * 2:
        return f'{d}d'
    return f'{d // 365}y'


def age_of(timestamp: str | None) -> str:
    t = parse_rfc3339(timestamp or '')
    if t is None:
        return '<unknown>'
    return human_duration((datetime.datetime.now(datetime.UTC) - t).total_seconds())


# ---------------------------------------------------------------------------------------------
# Patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: ``null`` deletes keys, lists and scalars replace whole."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# patchMergeKey of the list fields of builtin types (the rest is replaced whole, as merge patches do).
SMP_MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name', 'env': 'name',
    'volumes': 'name', 'volumeMounts': 'mountPath', 'volumeDevices': 'devicePath', 'ports': 'containerPort',
    'imagePullSecrets': 'name', 'conditions': 'type', 'ownerReferences': 'uid', 'hostAliases': 'ip',
    'topologySpreadConstraints': 'topologyKey', 'resourceClaims': 'name', 'secrets': 'name',
}
SMP_PRIMITIVE_MERGE = {'finalizers'}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch for builtin types (merge keys, ``$patch``, ``$setElementOrder``…)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'replace':
        return strip_smp_directives(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if key.startswith('$'):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and value.get('$patch') == 'delete':
            result.pop(key, None)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS and isinstance(result.get(key), list):
            merge_key = SMP_MERGE_KEYS[key]
            items = copy.deepcopy(result[key])
            for item in value:
                if isinstance(item, Mapping) and merge_key in item:
                    index = next((i for i, x in enumerate(items) if isinstance(x, Mapping) and x.get(merge_key) == item[merge_key]), None)
                    if item.get('$patch') == 'delete':
                        if index is not None:
                            items.pop(index)
                    elif index is not None:
                        items[index] = strategic_merge_patch(items[index], item)
                    else:
                        items.append(strip_smp_directives(item))
                else:
                    items.append(strip_smp_directives(item))
            result[key] = items
        elif isinstance(value, list) and key in SMP_PRIMITIVE_MERGE and isinstance(result.get(key), list):
            result[key] = list(result[key]) + [v for v in value if v not in result[key]]
        elif isinstance(value, Mapping):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = strip_smp_directives(value)
    for key, value in patch.items():
        if key.startswith('$deleteFromPrimitiveList/') and isinstance(value, list):
            field = key.split('/', 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [x for x in result[field] if x not in value]
        elif key.startswith('$setElementOrder/') and isinstance(value, list):
            field = key.split('/', 1)[1]
            merge_key = SMP_MERGE_KEYS.get(field)
            if isinstance(result.get(field), list):
                def position(x: Any, mk: str | None = merge_key, order: list[Any] = value) -> int:
                    probe = x.get(mk) if (mk and isinstance(x, Mapping)) else x
                    for i, o in enumerate(order):
                        if (o.get(mk) if (mk and isinstance(o, Mapping)) else o) == probe:
                            return i
                    return len(order)
                result[field] = sorted(result[field], key=position)
    retain = patch.get('$retainKeys')
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def strip_smp_directives(patch: Any) -> Any:
    """Strategic-merge-patch directives (``$patch``, ``$setElementOrder/…``…) are dropped."""
    if isinstance(patch, Mapping):
        return {
            k: strip_smp_directives(v) for k, v in patch.items()
            if not str(k).startswith('$')
        }
    if isinstance(patch, list):
        return [strip_smp_directives(v) for v in patch if not (isinstance(v, Mapping) and '$patch' in v)]
    return patch


# ---------------------------------------------------------------------------------------------
# Selectors

_LABEL_NAME = r'[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?'
_LABEL_NAME_RE = re.compile(rf'^{_LABEL_NAME}$')
_DNS1123_SUBDOMAIN_RE = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_DNS1123_LABEL_RE = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')


class SelectorError(ValueError):
    pass


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ''
    for ch in text:
        if ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        if ch == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_label_selector(text: str | None) -> Callable[[Mapping[str, str]], bool]:
    """
    Parse a label selector as ``kubectl``/clients send it and return a predicate on labels.

    Supported: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``, ``!a``;
    the comma means AND.
    """
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for term in _split_top_level(text or ''):
        m = re.fullmatch(r'(\S+)\s+(in|notin)\s*\((.*)\)', term)
        if m:
            key, op, values_text = m.group(1), m.group(2), m.group(3)
            values = {v.strip() for v in values_text.split(',') if v.strip()}
            if op == 'in':
                checks.append(lambda labels, k=key, vs=values: k in labels and labels[k] in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: k not in labels or labels[k] not in vs)
            continue
        m = re.fullmatch(r'([^=!\s]+)\s*(==|=|!=)\s*(\S*)', term)
        if m:
            key, op, value = m.group(1), m.group(2), m.group(3)
            if op == '!=':
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: k in labels and labels[k] == v)
            continue
        m = re.fullmatch(r'!\s*([^=!\s()]+)', term)
        if m:
            absent = m.group(1)
            checks.append(lambda labels, k=absent: k not in labels)
            continue
        m = re.fullmatch(r'([^=!\s()]+)', term)
        if m:
            present = m.group(1)
            checks.append(lambda labels, k=present: k in labels)
            continue
        raise SelectorError(f'unable to parse requirement: {term!r}')
    return lambda labels: all(check(labels or {}) for check in checks)


def get_path(obj: Any, path: str) -> Any:
    """Resolve ``a.b.c`` / ``.a.b[0].c`` (a tiny JSONPath subset) in nested dicts/lists."""
    current = obj
    for token in re.findall(r'[^.\[\]]+|\[\d+\]', path.strip().lstrip('.').replace('{', '').replace('}', '')):
        if token.startswith('['):
            index = int(token[1:-1])
            if isinstance(current, list) and -len(current) <= index < len(current):
                current = current[index]
            else:
                return None
        elif isinstance(current, Mapping):
            current = current.get(token)
        else:
            return None
    return current


def parse_field_selector(text: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """``metadata.name=x``, ``metadata.namespace!=y``, ``status.phase=Running``…; comma = AND."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for term in _split_top_level(text or ''):
        m = re.fullmatch(r'([^=!\s]+)\s*(==|=|!=)\s*(.*)', term)
        if not m:
            raise SelectorError(f'invalid field selector: {term!r}')
        field, op, value = m.group(1), m.group(2), m.group(3).strip()

        def getter(obj: Mapping[str, Any], f: str = field) -> str:
            v = get_path(obj, f)
            if v is None:
                return ''
            if isinstance(v, bool):
                return 'true' if v else 'false'
            return str(v)

        if op == '!=':
            checks.append(lambda obj, g=getter, v=value: g(obj) != v)
        else:
            checks.append(lambda obj, g=getter, v=value: g(obj) == v)
    return lambda obj: all(check(obj) for check in checks)


# ---------------------------------------------------------------------------------------------
# Names & labels


def validate_metadata(meta: Mapping[str, Any], *, name_kind: str = 'subdomain', max_name: int = 253) -> list[tuple[str, str, str]]:
    """Return a list of (field, reason, message) for invalid names/labels."""
    errors: list[tuple[str, str, str]] = []
    name = meta.get('name')
    if isinstance(name, str) and name:
        regex = _DNS1123_LABEL_RE if name_kind == 'label' else _DNS1123_SUBDOMAIN_RE
        if len(name) > max_name:
            errors.append(('metadata.name', 'FieldValueInvalid',
                           f'Invalid value: {json.dumps(name)}: must be no more than {max_name} characters'))
        elif not regex.match(name):
            what = 'RFC 1123 label' if name_kind == 'label' else 'RFC 1123 subdomain'
            errors.append(('metadata.name', 'FieldValueInvalid',
                           f"Invalid value: {json.dumps(name)}: a lowercase {what} must consist of lower case "
                           f"alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"))
    for key, value in (meta.get('labels') or {}).items():
        key_name = key.rsplit('/', 1)[-1]
        prefix = key.rsplit('/', 1)[0] if '/' in key else None
        if len(key_name) > 63 or not _LABEL_NAME_RE.match(key_name) or (prefix is not None and not _DNS1123_SUBDOMAIN_RE.match(prefix)):
            errors.append(('metadata.labels', 'FieldValueInvalid',
                           f'Invalid value: {json.dumps(key)}: name part must consist of alphanumeric characters, '
                           f"'-', '_' or '.', and must start and end with an alphanumeric character"))
        if not isinstance(value, str):
            errors.append(('metadata.labels', 'FieldValueInvalid', f'Invalid value: {json.dumps(value)}: must be a string'))
        elif len(value) > 63:
            errors.append(('metadata.labels', 'FieldValueInvalid',
                           f'Invalid value: {json.dumps(value)}: must be no more than 63 characters'))
        elif value and not _LABEL_NAME_RE.match(value):
            errors.append(('metadata.labels', 'FieldValueInvalid',
                           f"Invalid value: {json.dumps(value)}: a valid label must be an empty string or consist of "
                           f"alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))
    for _key, value in (meta.get('annotations') or {}).items():
        if not isinstance(value, str):
            errors.append(('metadata.annotations', 'FieldValueInvalid', f'Invalid value: {json.dumps(value)}: must be a string'))
    return errors


# ---------------------------------------------------------------------------------------------
# Structural schemas of CRDs: pruning, defaulting, validation.


def to_jsonschema(schema: Any) -> Any:
    """Convert an OpenAPI v3 CRD schema to JSON Schema, giving ``nullable`` its Kubernetes meaning."""
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ('properties', 'patternProperties', 'definitions'):
            result[key] = {k: to_jsonschema(v) for k, v in value.items()}
        elif key in ('items', 'additionalProperties', 'not'):
            result[key] = to_jsonschema(value) if isinstance(value, (Mapping, list)) else value
        elif key in ('allOf', 'anyOf', 'oneOf'):
            result[key] = [to_jsonschema(v) for v in value]
        elif key == 'default' or key.startswith('x-kubernetes-') or key in ('nullable', 'example', 'description'):
            continue
        else:
            result[key] = copy.deepcopy(value)
    if schema.get('x-kubernetes-int-or-string'):
        result.pop('type', None)
        result['type'] = ['integer', 'string']
    if schema.get('nullable'):
        t = result.get('type')
        if isinstance(t, str):
            result['type'] = [t, 'null']
        elif isinstance(t, list) and 'null' not in t:
            result['type'] = t + ['null']
        if 'enum' in result and None not in result['enum']:
            result['enum'] = list(result['enum']) + [None]
    return result


def prune_and_default(value: Any, schema: Mapping[str, Any] | None, path: str = '', *, root: bool = False) -> tuple[Any, list[str]]:
    """
    Apply the structural-schema treatment of the API server to a value.

    * unknown fields are pruned (unless ``x-kubernetes-preserve-unknown-fields``);
    * ``null`` in non-nullable fields is dropped (and then defaulted if a default exists);
    * ``default``s are applied to absent fields of existing objects.

    Returns the new value and the list of pruned field paths (for warnings/strictness).
    """
    pruned: list[str] = []
    if schema is None or not isinstance(schema, Mapping):
        return value, pruned
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get('properties') or {}
        addl = schema.get('additionalProperties')
        preserve = bool(schema.get('x-kubernetes-preserve-unknown-fields'))
        result: dict[str, Any] = {}
        for key, sub in value.items():
            sub_path = f'{path}.{key}' if path else key
            if root and key in ('apiVersion', 'kind', 'metadata'):
                result[key] = sub
                continue
            if key in props:
                sub_schema = props[key]
            elif isinstance(addl, Mapping):
                sub_schema = addl
            elif preserve or addl is True or (not props and schema.get('type') != 'object'):
                result[key] = sub
                continue
            else:  # an unknown field of a structural object: pruned
                pruned.append(sub_path)
                continue
            if sub is None and not (isinstance(sub_schema, Mapping) and sub_schema.get('nullable')):
                continue  # dropped; maybe defaulted below
            new_sub, sub_pruned = prune_and_default(sub, sub_schema, sub_path)
            result[key] = new_sub
            pruned.extend(sub_pruned)
        for key, sub_schema in props.items():
            if key not in result and isinstance(sub_schema, Mapping) and 'default' in sub_schema:
                default_value, _ = prune_and_default(copy.deepcopy(sub_schema['default']), sub_schema, f'{path}.{key}' if path else key)
                result[key] = default_value
        return result, pruned
    if isinstance(value, list):
        items = schema.get('items')
        if isinstance(items, Mapping):
            out = []
            for i, item in enumerate(value):
                new_item, sub_pruned = prune_and_default(item, items, f'{path}[{i}]')
                out.append(new_item)
                pruned.extend(sub_pruned)
            return out, pruned
    return value, pruned


def format_value(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def format_path(parts: Iterable[Any]) -> str:
    out = ''
    for part in parts:
        if isinstance(part, int):
            out += f'[{part}]'
        else:
            out += f'.{part}' if out else str(part)
    return out


def schema_error_causes(errors: Iterable[Any]) -> list[tuple[str, str, str]]:
    """Translate jsonschema errors into Kubernetes-like (field, reason, message) causes."""
    causes: list[tuple[str, str, str]] = []
    for error in errors:
        field = format_path(error.absolute_path)
        where = field or '<root>'
        v = error.validator
        inst = error.instance
        val = error.validator_value
        if v == 'required':
            present = set(inst) if isinstance(inst, Mapping) else set()
            for req in val:
                if req not in present:
                    causes.append((f'{field}.{req}' if field else req, 'FieldValueRequired', 'Required value'))
            continue
        if v == 'minimum':
            msg = f'Invalid value: {format_value(inst)}: {where} in body should be greater than or equal to {val}'
        elif v == 'maximum':
            msg = f'Invalid value: {format_value(inst)}: {where} in body should be less than or equal to {val}'
        elif v == 'exclusiveMinimum':
            msg = f'Invalid value: {format_value(inst)}: {where} in body should be greater than {val}'
        elif v == 'exclusiveMaximum':
            msg = f'Invalid value: {format_value(inst)}: {where} in body should be less than {val}'
        elif v == 'type':
            expected = val if isinstance(val, str) else '/'.join(t for t in val if t != 'null')
            msg = f'Invalid value: {format_value(inst)}: {where} in body must be of type {expected}: {format_value(type(inst).__name__)}'
        elif v == 'enum':
            supported = ', '.join(format_value(x) for x in val if x is not None)
            causes.append((field, 'FieldValueNotSupported', f'Unsupported value: {format_value(inst)}: supported values: {supported}'))
            continue
        elif v == 'pattern':
            msg = f"Invalid value: {format_value(inst)}: {where} in body should match '{val}'"
        elif v == 'minLength':
            msg = f'Invalid value: {format_value(inst)}: {where} in body should be at least {val} chars long'
        elif v == 'maxLength':
            causes.append((field, 'FieldValueTooLong', f'Too long: may not be more than {val} bytes'))
            continue
        elif v == 'maxItems':
            causes.append((field, 'FieldValueTooMany', f'Too many: {len(inst)}: must have at most {val} items'))
            continue
        elif v == 'minItems':
            msg = f'Invalid value: {len(inst)}: {where} in body should have at least {val} items'
        else:
            msg = f'Invalid value: {format_value(inst)}: {error.message}'
        causes.append((field, 'FieldValueInvalid', msg))
    return causes


# ---------------------------------------------------------------------------------------------
# Secrets


def normalize_secret(obj: dict[str, Any]) -> None:
    """``stringData`` is merged into base64 ``data`` and dropped, as the API server does."""
    string_data = obj.pop('stringData', None) or {}
    if string_data:
        data = dict(obj.get('data') or {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj['data'] = data
    obj.setdefault('type', 'Opaque')
