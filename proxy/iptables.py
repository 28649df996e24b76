"""`mecha iptables`: the nat rules that send a pod's TCP through mecha (istio-iptables' scheme).

Outbound: locally generated TCP goes OUTPUT -> MECHA_OUTPUT, which lets through (RETURN)
what must not come to mecha — mecha's own traffic (by uid / gid, or it would loop), anything
leaving through the loopback interface (the app talking to mecha's own listeners or to
itself), excluded ports and CIDRs — and jumps to MECHA_REDIRECT, a REDIRECT to the outbound
listener. Inbound: PREROUTING -> MECHA_INBOUND skips excluded ports and jumps to
MECHA_IN_REDIRECT, a REDIRECT to the inbound listener. The listeners read where each
connection was going with the `original_dst` listener filter.

Everything here is pure: `install_commands` and `remove_commands` return argv lists, the
CLI prints them (a shell script) or runs them.
"""

from __future__ import annotations

import ipaddress
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

INBOUND = "MECHA_INBOUND"
IN_REDIRECT = "MECHA_IN_REDIRECT"
OUTPUT = "MECHA_OUTPUT"
REDIRECT = "MECHA_REDIRECT"
CHAINS = (INBOUND, IN_REDIRECT, OUTPUT, REDIRECT)
TOOLS = {4: "iptables", 6: "ip6tables"}

Command = list[str]


@dataclass(frozen=True, slots=True)
class Interception:
    """What to redirect where; `None` port or CIDR lists mean "all"."""

    outbound_port: int = 15001
    inbound_port: int = 15006
    uids: tuple[str, ...] = ()
    """mecha's user ids (or names): its own connections are never redirected."""
    gids: tuple[str, ...] = ()
    inbound_ports: tuple[int, ...] | None = None
    """Ports whose inbound connections are redirected; None: all, (): inbound is off."""
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    outbound_cidrs: tuple[str, ...] | None = None
    """Destinations whose outbound connections are redirected; None: all, (): outbound off."""
    exclude_outbound_cidrs: tuple[str, ...] = ()
    ipv6: bool = False
    """Also write ip6tables rules (with the IPv6 CIDRs of the lists)."""

    @property
    def families(self) -> tuple[int, ...]:
        return (4, 6) if self.ipv6 else (4,)

    @property
    def inbound(self) -> bool:
        return self.inbound_ports != ()

    @property
    def outbound(self) -> bool:
        return self.outbound_cidrs != ()


def _nat(family: int, *args: str) -> Command:
    return [TOOLS[family], "-t", "nat", *args]


def _of_family(cidrs: Sequence[str], family: int) -> list[str]:
    return [c for c in cidrs if ipaddress.ip_network(c, strict=False).version == family]


def install_commands(spec: Interception) -> list[Command]:
    """Every command that sets the rules up, IPv4 first, in the order they must run."""
    commands: list[Command] = []
    for family in spec.families:
        commands += _inbound(spec, family) if spec.inbound else []
        commands += _outbound(spec, family) if spec.outbound else []
    return commands


def _inbound(spec: Interception, family: int) -> list[Command]:
    nat = _nat
    commands = [
        nat(family, "-N", INBOUND),
        nat(family, "-N", IN_REDIRECT),
        nat(family, "-A", IN_REDIRECT, "-p", "tcp", "-j", "REDIRECT",
            "--to-ports", str(spec.inbound_port)),
        nat(family, "-A", "PREROUTING", "-p", "tcp", "-j", INBOUND),
    ]  # fmt: skip
    commands += [nat(family, "-A", INBOUND, "-p", "tcp", "--dport", str(port), "-j", "RETURN")
                 for port in spec.exclude_inbound_ports]  # fmt: skip
    if spec.inbound_ports is None:
        commands.append(nat(family, "-A", INBOUND, "-p", "tcp", "-j", IN_REDIRECT))
    commands += [nat(family, "-A", INBOUND, "-p", "tcp", "--dport", str(port), "-j", IN_REDIRECT)
                 for port in spec.inbound_ports or ()]  # fmt: skip
    return commands


def _outbound(spec: Interception, family: int) -> list[Command]:
    nat = _nat
    commands = [
        nat(family, "-N", OUTPUT),
        nat(family, "-N", REDIRECT),
        nat(family, "-A", REDIRECT, "-p", "tcp", "-j", "REDIRECT",
            "--to-ports", str(spec.outbound_port)),
        nat(family, "-A", "OUTPUT", "-p", "tcp", "-j", OUTPUT),
    ]  # fmt: skip
    commands += [nat(family, "-A", OUTPUT, "-m", "owner", "--uid-owner", uid, "-j", "RETURN")
                 for uid in spec.uids]  # fmt: skip
    commands += [nat(family, "-A", OUTPUT, "-m", "owner", "--gid-owner", gid, "-j", "RETURN")
                 for gid in spec.gids]  # fmt: skip
    # Loopback: the app talking to mecha's own listeners (runtime API, admin) or to itself.
    commands.append(nat(family, "-A", OUTPUT, "-o", "lo", "-j", "RETURN"))
    loopback = "127.0.0.1/32" if family == 4 else "::1/128"
    commands.append(nat(family, "-A", OUTPUT, "-d", loopback, "-j", "RETURN"))
    commands += [nat(family, "-A", OUTPUT, "-p", "tcp", "--dport", str(port), "-j", "RETURN")
                 for port in spec.exclude_outbound_ports]  # fmt: skip
    commands += [nat(family, "-A", OUTPUT, "-d", cidr, "-j", "RETURN")
                 for cidr in _of_family(spec.exclude_outbound_cidrs, family)]  # fmt: skip
    if spec.outbound_cidrs is None:
        commands.append(nat(family, "-A", OUTPUT, "-p", "tcp", "-j", REDIRECT))
    else:
        commands += [nat(family, "-A", OUTPUT, "-p", "tcp", "-d", cidr, "-j", REDIRECT)
                     for cidr in _of_family(spec.outbound_cidrs, family)]  # fmt: skip
    return commands


def remove_commands(ipv6: bool = False) -> list[Command]:
    """Undo install_commands (whatever options it had): unhook, flush, then delete chains."""
    commands: list[Command] = []
    for family in (4, 6) if ipv6 else (4,):
        commands += [
            _nat(family, "-D", "PREROUTING", "-p", "tcp", "-j", INBOUND),
            _nat(family, "-D", "OUTPUT", "-p", "tcp", "-j", OUTPUT),
        ]
        commands += [_nat(family, "-F", chain) for chain in CHAINS]
        commands += [_nat(family, "-X", chain) for chain in CHAINS]
    return commands


def script(commands: Sequence[Command]) -> str:
    """The commands as shell lines, quoted where needed."""
    return "".join(shlex.join(command) + "\n" for command in commands)


Runner = Callable[[Command], "subprocess.CompletedProcess[str]"]


def run_command(command: Command) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def apply(spec: Interception, run: Runner = run_command) -> list[str]:
    """Install the rules, replacing mecha's previous ones. Returns the errors, if any; after
    an error what was installed is removed again, so a half-applied set never stays."""
    remove(spec.ipv6, run)
    for command in install_commands(spec):
        done = run(command)
        if done.returncode != 0:
            remove(spec.ipv6, run)
            return [f"{shlex.join(command)}: {(done.stderr or done.stdout).strip()}"]
    return []


def remove(ipv6: bool = False, run: Runner = run_command) -> list[str]:
    """Run the cleanup; rules or chains that are not there are not errors."""
    errors = []
    for command in remove_commands(ipv6):
        done = run(command)
        output = (done.stderr or done.stdout).strip()
        if done.returncode != 0 and not _absent(output):
            errors.append(f"{shlex.join(command)}: {output}")
    return errors


def _absent(message: str) -> bool:
    """iptables' ways of saying the rule or chain is not there."""
    lowered = message.lower()
    return any(text in lowered for text in (
        "no chain/target/match by that name", "does a matching rule exist",
        "bad rule", "doesn't exist", "does not exist", "no such file or directory",
    ))  # fmt: skip


def parse_ports(text: str) -> tuple[int, ...]:
    """`80,443` -> (80, 443); raises ValueError naming the bad entry."""
    ports = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ValueError(f"not a port: {part!r}")
        ports.append(int(part))
    return tuple(ports)


def parse_cidrs(text: str) -> tuple[str, ...]:
    """`10.0.0.0/8,fd00::/8` -> normalised networks; raises ValueError naming the bad entry."""
    cidrs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            cidrs.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {part!r}") from None
    return tuple(cidrs)
