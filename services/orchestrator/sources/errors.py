"""Failures of a source call as ``SourceError``: a reason the pipeline records and whether
retrying can help.

Connection-level failures arrive as ``ConnectionProblem`` (the same reasons the inventory
shows on the provider) and keep their permanence: credentials, certificate and API problems
wait for a person; an unreachable, slow or failing server is retried.
"""

from __future__ import annotations

from services.orchestrator.sources.contract import SourceError
from shared.sources.problems import ConnectionProblem, Reason

# Reasons the pipeline sees (SourceError.reason), spelled once.
VM_NOT_FOUND = "VmNotFound"
SOURCE_UNAVAILABLE = "SourceUnavailable"
AUTH_FAILED = "AuthFailed"
PERMISSION_DENIED = "PermissionDenied"
TLS_UNTRUSTED = "TlsUntrusted"
TLS_CHANGED = "TlsCertificateChanged"
SOURCE_UNSUPPORTED = "SourceUnsupported"
#: The source refused a power action or a step now (a task in progress, a state race).
SOURCE_BUSY = "SourceBusy"
#: A snapshot, volume or image of the conversion ended in an error state.
CONVERSION_FAILED = "ConversionFailed"
#: The project's quota does not allow another snapshot, volume or image now.
QUOTA_EXCEEDED = "QuotaExceeded"
#: A disk the conversion starts from (a Cinder volume) is gone.
DISK_NOT_FOUND = "DiskNotFound"
#: Deleting artifacts waits on the cloud (a volume still uploading or deleting).
CLEANUP_PENDING = "CleanupPending"

_OF_REASON: dict[Reason, str] = {
    Reason.AUTH_REFUSED: AUTH_FAILED,
    Reason.PERMISSION_DENIED: PERMISSION_DENIED,
    Reason.TLS_UNTRUSTED: TLS_UNTRUSTED,
    Reason.TLS_CHANGED: TLS_CHANGED,
    Reason.API_UNSUPPORTED: SOURCE_UNSUPPORTED,
    Reason.NOT_AN_API: SOURCE_UNSUPPORTED,
    Reason.HOST_UNREACHABLE: SOURCE_UNAVAILABLE,
    Reason.TIMEOUT: SOURCE_UNAVAILABLE,
    Reason.SERVER_ERROR: SOURCE_UNAVAILABLE,
}


def from_problem(problem: ConnectionProblem) -> SourceError:
    """A connection problem as the pipeline's error. Permanent messages already say what
    to fix (the Secret, the certificate settings, the URL); temporary ones say they are
    retried."""
    message = problem.message
    if not problem.permanent and "retry" not in message:
        message = f"{message}; retrying"
    return SourceError(_OF_REASON[problem.reason], message, permanent=problem.permanent)


def vm_not_found(vm: str, where: str) -> SourceError:
    """``vm`` names it as the source does ("VM <id>", "server <id>")."""
    return SourceError(
        VM_NOT_FOUND,
        f"{vm} is not in {where} any more (deleted or moved to another provider)",
        permanent=True,
    )


def settle_power(outcome: str, *, action: str, vm: str, where: str) -> None:
    """The end of a power call whose thread answered ``outcome``: ``""`` done, ``"gone"``
    the VM is not there (permanent), anything else why the source refused now (retried)."""
    if outcome == "gone":
        raise vm_not_found(vm, where)
    if outcome:
        raise SourceError(
            SOURCE_BUSY, f"{where} cannot {action} the {vm} now ({outcome}); retrying"
        )
