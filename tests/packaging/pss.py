"""The Pod Security Standards checks ("baseline" and "restricted"), as documented at
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version 1.29+).

`violations(pod_spec, "restricted")` lists every rule a pod spec breaks (empty: admitted),
so a test can hold our pods to what a namespace labelled
`pod-security.kubernetes.io/enforce: restricted` admits.
"""

from __future__ import annotations

from typing import Any

BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def _containers(spec: dict) -> list[tuple[str, dict]]:
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        out += [(f"{key}[{c.get('name')}]", c) for c in spec.get(key) or []]
    return out


def violations(spec: dict[str, Any], level: str = "restricted") -> list[str]:
    """Every Pod Security Standards rule of `level` that the pod spec breaks."""
    bad: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    containers = _containers(spec)
    # --- baseline
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            bad.append(f"host namespaces: {field}=true")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        bad.append("hostProcess")
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            bad.append(f"{name}: hostProcess")
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        added = set((sc.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPS:
            bad.append(f"{name}: capabilities added beyond baseline {sorted(added - BASELINE_CAPS)}")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                bad.append(f"{name}: hostPort {port['hostPort']}")
        if sc.get("procMount") not in (None, "Default"):
            bad.append(f"{name}: procMount {sc['procMount']}")
        app = (sc.get("appArmorProfile") or {}).get("type")
        if app not in (None, "RuntimeDefault", "Localhost"):
            bad.append(f"{name}: appArmorProfile {app}")
    for name, sc in [("pod", pod_sc)] + [(n, c.get("securityContext") or {}) for n, c in containers]:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            bad.append(f"{name}: seLinuxOptions {se}")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            bad.append(f"{name}: seccompProfile Unconfined")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            bad.append(f"unsafe sysctl {sysctl.get('name')}")
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            bad.append(f"volume {vol.get('name')}: hostPath")
    if level == "baseline":
        return bad
    # --- restricted
    for vol in spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if kinds - RESTRICTED_VOLUMES:
            bad.append(f"volume {vol.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod_sc.get("runAsUser") == 0:
        bad.append("pod: runAsUser 0")
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot")
        if not (non_root is True or (non_root is None and pod_non_root)):
            bad.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if not (seccomp in ("RuntimeDefault", "Localhost") or (seccomp is None and pod_seccomp)):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: capabilities may add only NET_BIND_SERVICE")
    return bad
