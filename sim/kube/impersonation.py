"""User impersonation (``kubectl --as``, ``--as-group``, ``--as-uid``), as the API server's
impersonation filter does it.

Without it a ``kubectl --as=system:serviceaccount:ns:sa auth can-i ...`` run by the admin
answers for the admin, so a test that checks what a ServiceAccount may do would pass for the
wrong reason. The requester needs the ``impersonate`` verb on each thing it claims: ``users``
(or ``serviceaccounts`` in the account's namespace, for a ServiceAccount's username),
``groups``, ``uids`` and ``userextras/<key>``; then the request is authenticated as the
impersonated identity and everything after (RBAC, the reviews, ``auth whoami``) sees only that.
"""

from __future__ import annotations

from sim.kube.authn import AUTHENTICATED, SA_PREFIX, Identity
from sim.kube.errors import ApiError
from sim.kube.rbac import Attributes, Authorizer

USER = "impersonate-user"
GROUP = "impersonate-group"
UID = "impersonate-uid"
EXTRA = "impersonate-extra-"
AUTHENTICATION = "authentication.k8s.io"


def identity_of(
    authz: Authorizer, requester: Identity, raw_headers: list[tuple[bytes, bytes]]
) -> Identity:
    """The identity a request acts as: the requester's own, or the one it may impersonate."""
    user = ""
    groups: list[str] = []
    uid = ""
    extra: dict[str, list[str]] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        if name == USER:
            user = value
        elif name == GROUP:
            groups.append(value)
        elif name == UID:
            uid = value
        elif name.startswith(EXTRA):
            extra.setdefault(name[len(EXTRA) :], []).append(value)
    if not user:
        if groups or uid or extra:
            # The upstream filter's own words for an impersonation without a user.
            raise ApiError(
                500,
                "InternalError",
                "Internal error occurred: requested impersonation without a user to impersonate",
            )
        return requester
    if user.startswith(SA_PREFIX) and user.count(":") == 3:
        namespace, account = user[len(SA_PREFIX) :].split(":", 1)
        authz.check(
            requester,
            Attributes(
                verb="impersonate", resource="serviceaccounts", name=account, namespace=namespace
            ),
        )
        implied = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    else:
        authz.check(requester, Attributes(verb="impersonate", resource="users", name=user))
        implied = []
    for group in groups:
        authz.check(requester, Attributes(verb="impersonate", resource="groups", name=group))
    if uid:
        authz.check(
            requester,
            Attributes(verb="impersonate", group=AUTHENTICATION, resource="uids", name=uid),
        )
    for key, values in extra.items():
        for value in values:
            authz.check(
                requester,
                Attributes(
                    verb="impersonate",
                    group=AUTHENTICATION,
                    resource="userextras",
                    subresource=key,
                    name=value,
                ),
            )
    # A ServiceAccount's groups are implied only when no group is asked for; every
    # impersonated user but system:anonymous is also system:authenticated.
    final = groups or implied
    if user != "system:anonymous" and AUTHENTICATED not in final:
        final = [*final, AUTHENTICATED]
    return Identity(user, tuple(final), uid=uid, extra=extra)
