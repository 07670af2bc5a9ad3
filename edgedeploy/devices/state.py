"""Device state readings: governor, current / max frequency per core, thermal zones, load (best effort).

One shell round trip reads everything from ``/sys`` and ``/proc`` (works with busybox / toybox ``sh`` on Android
too); whatever cannot be read is simply absent. Under qemu-user the readings are the host's: a profile's CPU facts
come from the profile, these readings are what the kernel says.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgedeploy.devices.transport import Transport

_SCRIPT = r"""
echo "arch=$(uname -m 2>/dev/null)"
echo "kernel=$(uname -r 2>/dev/null)"
echo "online=$(cat /sys/devices/system/cpu/online 2>/dev/null)"
echo "loadavg=$(cat /proc/loadavg 2>/dev/null)"
for d in /sys/devices/system/cpu/cpu[0-9]*; do
  [ -d "$d" ] || continue
  n=${d##*cpu}
  for f in scaling_governor scaling_cur_freq cpuinfo_max_freq scaling_max_freq cpuinfo_min_freq; do
    [ -r "$d/cpufreq/$f" ] && echo "cpu$n.$f=$(cat "$d/cpufreq/$f" 2>/dev/null)"
  done
done
for z in /sys/class/thermal/thermal_zone*; do
  [ -d "$z" ] || continue
  echo "${z##*/}.type=$(cat "$z/type" 2>/dev/null)"
  echo "${z##*/}.temp=$(cat "$z/temp" 2>/dev/null)"
done
echo "nproc=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
"""


def _int(v: str) -> int | None:
    try:
        return int(v.strip())
    except ValueError:
        return None


def parse_state(text: str) -> dict[str, Any]:
    """Turn the ``key=value`` lines of the state script into the state dict (see :func:`read_device_state`)."""
    raw: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            raw[k.strip()] = v.strip()
    cpus: dict[str, dict[str, Any]] = {}
    zones: dict[str, dict[str, Any]] = {}
    for k, v in raw.items():
        if k.startswith("cpu") and "." in k:
            n, field = k[3:].split(".", 1)
            c = cpus.setdefault(n, {})
            if field == "scaling_governor":
                c["governor"] = v
            else:
                key = {
                    "scaling_cur_freq": "cur_khz",
                    "cpuinfo_max_freq": "max_khz",
                    "scaling_max_freq": "scaling_max_khz",
                    "cpuinfo_min_freq": "min_khz",
                }[field]
                iv = _int(v)
                if iv is not None:
                    c[key] = iv
        elif k.startswith("thermal_zone") and "." in k:
            z, field = k.split(".", 1)
            if field == "type":
                zones.setdefault(z, {})["type"] = v
            else:
                t = _int(v)
                if t is not None:
                    # millidegrees on Linux and most Android kernels; a few report whole degrees
                    zones.setdefault(z, {})["temp_c"] = t / 1000.0 if abs(t) > 200 else float(t)
    state: dict[str, Any] = {
        "arch": raw.get("arch") or None,
        "kernel": raw.get("kernel") or None,
        "online": raw.get("online") or None,
        "nproc": _int(raw.get("nproc", "")),
        "cpus": dict(sorted(cpus.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)),
        "thermal": {z: d for z, d in sorted(zones.items()) if "temp_c" in d},
    }
    govs = [c["governor"] for c in cpus.values() if "governor" in c]
    state["governor"] = Counter(govs).most_common(1)[0][0] if govs else None
    if len(set(govs)) > 1:
        state["governors"] = sorted(set(govs))
    temps = [d["temp_c"] for d in state["thermal"].values()]
    state["max_temp_c"] = max(temps) if temps else None
    la = raw.get("loadavg", "").split()
    if len(la) >= 3:
        try:
            state["loadavg"] = [float(x) for x in la[:3]]
        except ValueError:
            pass
    return state


def read_device_state(transport: Transport) -> dict[str, Any]:
    """Read the device's state through ``transport`` (local, SSH or ADB), best effort.

    Returns ``{"time": unix s, "arch", "kernel", "nproc", "online", "governor" (most common), "cpus": {"0":
    {"governor", "cur_khz", "max_khz", "scaling_max_khz", "min_khz"}}, "thermal": {"thermal_zone0": {"type",
    "temp_c"}}, "max_temp_c", "loadavg": [1, 5, 15 min]}``; frequencies in kHz, temperatures in degrees C.
    Raises only the transport's connection errors.
    """
    r = transport.sh(_SCRIPT, check=False, timeout=60)
    state = parse_state(r.stdout)
    state["time"] = time.time()
    return state


def fastest_cores(state: dict[str, Any]) -> list[int]:
    """CPUs whose ``cpuinfo_max_freq`` is the highest (the big cluster), or ``[]`` when sysfs says nothing."""
    maxes = {int(n): c["max_khz"] for n, c in state.get("cpus", {}).items() if "max_khz" in c and n.isdigit()}
    if not maxes:
        return []
    top = max(maxes.values())
    return sorted(n for n, f in maxes.items() if f == top)


def throttling(
    before: dict[str, Any], after: dict[str, Any], trace: list[dict[str, Any]], cores: list[int]
) -> list[str]:
    """Signs of thermal throttling on ``cores`` during a run (empty when none), as warning sentences.

    A core is flagged when its ``scaling_max_freq`` dropped between before and after, or when its current frequency
    in the run's trace fell below 90 % of the highest frequency it showed before or during the run.
    """
    out: list[str] = []
    b, a = before.get("cpus", {}), after.get("cpus", {})
    for c in cores:
        k = str(c)
        smb, sma = b.get(k, {}).get("scaling_max_khz"), a.get(k, {}).get("scaling_max_khz")
        if smb and sma and sma < smb:
            out.append(f"cpu{c}: scaling_max_freq fell from {smb} to {sma} kHz during the run (thermal cap)")
            continue
        seen = [t["freq_khz"][k] for t in trace if k in t.get("freq_khz", {})]
        ref = max([*seen, b.get(k, {}).get("cur_khz", 0)], default=0)
        if seen and ref and min(seen) < 0.9 * ref:
            out.append(f"cpu{c}: frequency fell to {min(seen)} kHz from {ref} kHz during the run (throttling?)")
    return out
