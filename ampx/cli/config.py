"""Which runtime the CLI drives: --backend, then AMPX_BACKEND, then the config file, then local."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..settings import env

BACKENDS = ("local", "kube")
KEYS = {"backend": BACKENDS}


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


def set_value(key: str, value: str) -> Path:
    if key not in KEYS:
        raise ConfigError(f"unknown key {key!r} (known: {', '.join(KEYS)})")
    if value not in KEYS[key]:
        raise ConfigError(f"{key} must be one of {', '.join(KEYS[key])}, not {value!r}")
    data = load()
    data[key] = value
    return save(data)


def resolve_backend_name(flag: Optional[str]) -> str:
    for source, value in (("--backend", flag), ("AMPX_BACKEND", env("AMPX_BACKEND")),
                          (str(config_path()), load().get("backend"))):
        if value:
            if value not in BACKENDS:
                raise ConfigError(f"{source}: backend must be local or kube, not {value!r}")
            return value
    return "local"
