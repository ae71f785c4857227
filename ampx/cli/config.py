"""Which runtime the CLI drives: --backend, then AMPX_BACKEND, then the config file, then local."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..settings import env

BACKENDS = ("local", "kube")
# branchPrefix: the prefix of task branches (default amp/); allowedRepos: repository globs the
# local runtime may work on (unset: every repository the token reaches). See ampx.core.allowlist.
# maxConcurrentAttempts[PerRepo]: how many attempts run at once (unset or `unlimited`: no cap);
# the others wait, `queued`, with their place in line. See ampx.core.queueing.
LIMIT_KEYS = ("maxConcurrentAttempts", "maxConcurrentAttemptsPerRepo")
KEYS = {"backend": BACKENDS, "branchPrefix": None, "allowedRepos": None,
        **{k: None for k in LIMIT_KEYS}}
UNLIMITED = ("unlimited", "none")


class ConfigError(ValueError):
    pass


def config_path() -> Path:
    home = env("AMPX_HOME")
    if home:
        base = Path(home)
    else:
        from platformdirs import user_config_dir  # only without AMPX_HOME

        base = Path(user_config_dir("ampx"))
    return base / "config.yaml"


def load() -> dict:
    path = config_path()
    if not path.exists():
        return {}
    import yaml  # only when there is a file to read

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping")
    return data


def save(data: dict) -> Path:
    import yaml

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=True))
    tmp.replace(path)
    return path


def _parsed(key: str, value: str):
    """The stored form of `ampx config set KEY VALUE`, refused with the reason if unusable."""
    from ..core.allowlist import AllowListError, parse_allowlist
    from ..core.branches import BranchPrefixError, check_prefix

    if KEYS[key] is not None:
        if value not in KEYS[key]:
            raise ConfigError(f"{key} must be one of {', '.join(KEYS[key])}, not {value!r}")
        return value
    if key in LIMIT_KEYS:
        if value.strip().lower() in UNLIMITED:
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise ConfigError(f"{key} must be a whole number of at least 1, or unlimited; "
                              f"not {value!r}")
        return number
    try:
        if key == "branchPrefix":
            return check_prefix(value)
        globs = [g.strip() for g in value.split(",") if g.strip()]  # acme/*,tools/ci
        parse_allowlist(globs, key)
        return globs
    except (BranchPrefixError, AllowListError) as exc:
        raise ConfigError(str(exc)) from None


def set_value(key: str, value: str) -> Path:
    if key not in KEYS:
        raise ConfigError(f"unknown key {key!r} (known: {', '.join(KEYS)})")
    data = load()
    parsed = _parsed(key, value)
    if parsed is None:
        data.pop(key, None)  # unlimited: the default
    else:
        data[key] = parsed
    return save(data)


def limits():
    """The local runtime's concurrency limits from the config file (unset: unlimited)."""
    from ..core.queueing import Limits

    data = load()
    try:
        return Limits(per_namespace=data.get("maxConcurrentAttempts"),
                      per_repo=data.get("maxConcurrentAttemptsPerRepo"))
    except ValueError as exc:
        raise ConfigError(f"{config_path()}: {exc}") from None


def task_rules(git_url: str):
    """The local runtime's task rules from the config file (branch prefix, allow-list)."""
    from ..core.admission import TaskRules
    from ..core.allowlist import AllowListError, parse_allowlist
    from ..core.branches import BranchPrefixError
    from ..core.ids import DEFAULT_BRANCH_PREFIX

    data = load()
    try:
        return TaskRules(git_url=git_url,
                         branch_prefix=data.get("branchPrefix") or DEFAULT_BRANCH_PREFIX,
                         allowed_repos=parse_allowlist(data.get("allowedRepos"),
                                                       f"{config_path()}: allowedRepos"))
    except (BranchPrefixError, AllowListError) as exc:
        raise ConfigError(f"{config_path()}: {exc}") from None


def branch_prefix() -> str:
    """The prefix of the task branches `ampx start` names (both runtimes; a cluster with
    another prefix needs the same here: `ampx config set branchPrefix PREFIX`)."""
    from ..core.branches import BranchPrefixError, check_prefix
    from ..core.ids import DEFAULT_BRANCH_PREFIX

    try:
        return check_prefix(load().get("branchPrefix") or DEFAULT_BRANCH_PREFIX)
    except BranchPrefixError as exc:
        raise ConfigError(f"{config_path()}: {exc}") from None


def resolve_backend_name(flag: Optional[str]) -> str:
    for source, value in (("--backend", flag), ("AMPX_BACKEND", env("AMPX_BACKEND")),
                          (str(config_path()), load().get("backend"))):
        if value:
            if value not in BACKENDS:
                raise ConfigError(f"{source}: backend must be local or kube, not {value!r}")
            return value
    return "local"
