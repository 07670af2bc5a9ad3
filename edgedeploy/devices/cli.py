"""``edgedeploy devices``: list the device profiles; ``edgedeploy devices check NAME`` connects and reports.

The lead's CLI adds this group with ``main.add_command(devices_group)``. Errors are
:class:`~edgedeploy.errors.EdgeDeployError` subclasses, left to the main CLI to print as one line and exit with
their ``exit_code`` (2 bad profile / unknown device, 5 device unreachable / auth / command failed).
"""

from __future__ import annotations

import json
from typing import Any

import click

from edgedeploy.devices.profile import DeviceProfile, list_profiles, load_profile


def _mhz(khz: int | None) -> str:
    return f"{khz / 1000:.0f}" if khz else "?"


@click.group("devices", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.pass_context
def devices_group(ctx: click.Context, as_json: bool) -> None:
    """List device profiles (./devices, the shipped ones); `devices check NAME` connects to one."""
    if ctx.invoked_subcommand is not None:
        return
    profiles = list_profiles(
        on_error=lambda e: click.echo(click.style("warning:", fg="yellow") + f" skipped: {e}", err=True)
    )
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") | {"path": str(p.path)} for p in profiles], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table("name", "transport", "address", "arch", "os", "cores")
    for p in profiles:
        cores = ", ".join(
            f"{len(c.cores)}x {c.core_type or c.name}" + (f" @{c.max_freq_mhz:g} MHz" if c.max_freq_mhz else "")
            for c in p.clusters
        )
        t.add_row(p.name, p.transport, p.address, p.arch or "?", p.os or "?", cores or "?")
    Console().print(t)


def check_device(profile: DeviceProfile) -> dict[str, Any]:
    """Connect and collect what the device says: state (arch, cores, frequencies, governor, temperatures) and the
    runtimes the runner can import there. Raises the transport's :class:`~edgedeploy.errors.DeviceError`s."""
    from edgedeploy.devices.connect import connect
    from edgedeploy.devices.remote import probe_device
    from edgedeploy.devices.state import read_device_state

    with connect(profile) as t:
        state = read_device_state(t)
        try:
            probe = probe_device(t, profile)
        except Exception as e:  # noqa: BLE001 - no Python on the board is a finding, not a failure
            probe = {"error": str(e)}
    return {"profile": profile.name, "address": profile.address, "state": state, "probe": probe}


@devices_group.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def check_cmd(name: str, as_json: bool) -> None:
    """Connect to device NAME (a profile name or YAML path) and print arch, cores and max frequencies, governor,
    temperatures and the runtimes found."""
    profile = load_profile(name)
    info = check_device(profile)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    st, pr = info["state"], info["probe"]
    click.echo(f"device    {profile.name} ({profile.address})")
    click.echo(f"arch      {pr.get('arch') or st.get('arch')}  (profile: {profile.arch or 'not set'})")
    click.echo(f"kernel    {st.get('kernel')}")
    cpus = st.get("cpus", {})
    click.echo(f"cores     {st.get('nproc')} online ({st.get('online')})")
    for n, c in cpus.items():
        click.echo(
            f"  cpu{n:<3} max {_mhz(c.get('max_khz'))} MHz  cur {_mhz(c.get('cur_khz'))} MHz  {c.get('governor', '')}"
        )
    if not cpus:
        click.echo("  (no cpufreq in sysfs)")
    click.echo(f"governor  {st.get('governor') or 'unknown'}")
    temps = ", ".join(f"{d.get('type', z)} {d['temp_c']:.1f} C" for z, d in st.get("thermal", {}).items())
    click.echo(f"thermal   {temps or 'no thermal zones'}")
    click.echo(f"load      {st.get('loadavg')}")
    if profile.python is None:
        click.echo("python    none (native tools only)")
        for tool, path in pr.get("native_tools", {}).items():
            click.echo(f"native    {tool}: {path or 'not found'}")
    elif "error" in pr:
        click.echo(f"python    not usable ({profile.python}): {pr['error']}")
    else:
        click.echo(f"python    {profile.python} {pr.get('python')}")
        rts = ", ".join(f"{k} {v}" for k, v in pr.get("runtimes", {}).items()) or "none"
        click.echo(f"runtimes  {rts}")
        for tool, path in pr.get("native_tools", {}).items():
            click.echo(f"native    {tool}: {path or 'not found'}")
