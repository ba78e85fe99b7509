"""The renewal decision: one pure function shared by the CLI, the operator and Ansible."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plantline.pki.keys import KeySpec
from plantline.pki.window import MaintenanceWindow, in_any, next_opening


class Action(enum.StrEnum):
    """What to do with a certificate now."""

    NOOP = "NOOP"  # valid and outside its renewal window
    POSTPONED = "POSTPONED"  # due, but waiting for the next maintenance window
    CREATE = "CREATE"  # there is no certificate yet
    RENEW = "RENEW"  # issue a new certificate for the same key
    REPLACE_KEY = "REPLACE_KEY"  # issue a new certificate for a new key

    @property
    def needs_work(self) -> bool:
        return self in (Action.CREATE, Action.RENEW, Action.REPLACE_KEY)


@dataclass(frozen=True, slots=True)
class RenewalPolicy:
    """When a certificate is due: `renew_before` its expiry, inside a maintenance window.

    Renewal waits for a window only while the certificate would still be valid
    `minimum_remaining` after that window opens; otherwise it happens at once.
    """

    renew_before: timedelta
    windows: Sequence[MaintenanceWindow] = ()
    key: KeySpec | None = None
    minimum_remaining: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CertFacts:
    """What the decision needs to know about an existing certificate."""

    not_after: datetime
    key: KeySpec
    revoked: bool = False
    issued_by_current_ca: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """The action to take and a sentence saying why."""

    action: Action
    reason: str
    retry_at: datetime | None = None  # for POSTPONED: when the next window opens


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _in_window(now: datetime, facts: CertFacts, policy: RenewalPolicy, due: Decision) -> Decision:
    if in_any(policy.windows, now):
        return due
    opening = next_opening(policy.windows, now)
    if opening is not None and opening + policy.minimum_remaining <= facts.not_after:
        return Decision(
            Action.POSTPONED,
            f"{due.reason}; postponed to the maintenance window opening {_stamp(opening)}",
            retry_at=opening,
        )
    return Decision(due.action, f"{due.reason}; it expires before the next maintenance window")


def decide(now: datetime, cert: CertFacts | None, policy: RenewalPolicy) -> Decision:
    """Return what to do with `cert` at `now` under `policy`."""
    if cert is None:
        return Decision(Action.CREATE, "no certificate exists")
    key_wrong = policy.key is not None and cert.key is not policy.key
    redo = Action.REPLACE_KEY if key_wrong else Action.RENEW
    if cert.revoked:
        return Decision(Action.REPLACE_KEY, "the certificate is revoked")
    if now >= cert.not_after:
        return Decision(redo, f"the certificate expired at {_stamp(cert.not_after)}")
    if key_wrong:
        due = Decision(Action.REPLACE_KEY, f"the key is {cert.key}, the policy wants {policy.key}")
        return _in_window(now, cert, policy, due)
    if not cert.issued_by_current_ca:
        return _in_window(now, cert, policy, Decision(Action.RENEW, "issued by a CA that is being rotated out"))
    opens = cert.not_after - policy.renew_before
    if now < opens:
        return Decision(Action.NOOP, f"valid until {_stamp(cert.not_after)}; the renewal window opens {_stamp(opens)}")
    due = Decision(Action.RENEW, f"inside the renewal window: expires {_stamp(cert.not_after)}")
    return _in_window(now, cert, policy, due)
