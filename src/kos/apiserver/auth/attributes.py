"""What an authorizer judges: Kubernetes' `authorizer.Attributes` (k8s.io/apiserver `pkg/authorization/authorizer`)."""

from __future__ import annotations

import msgspec

from kos.apiserver.auth.user import UserInfo


class Attributes(msgspec.Struct, frozen=True, gc=False):
    """One request as authorization sees it (made once per request on a secure server: a msgspec Struct, which
    builds in a fraction of a frozen dataclass's time).

    A resource request (`resource_request`) names `verb` (get, list, watch, create, update, patch, delete,
    deletecollection), `api_group`, `api_version`, `resource` (plural), `subresource` ("" or "status"),
    `namespace` ("" for cluster scope or all namespaces) and `name` ("" for collections). A non-resource
    request names `path` and `verb` (the lower-cased HTTP method: get, head, post, ...).
    """

    user: UserInfo
    verb: str
    resource_request: bool = True
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""

    def describe(self) -> str:
        """The forbidden message's middle, as kube-apiserver words it (`pkg/endpoints/handlers/responsewriters`)."""
        who = f'User "{self.user.name}"'
        if not self.resource_request:
            return f'{who} cannot {self.verb} path "{self.path}"'
        res = self.resource + ("/" + self.subresource if self.subresource else "")
        where = f' in the namespace "{self.namespace}"' if self.namespace else " at the cluster scope"
        return f'{who} cannot {self.verb} resource "{res}" in API group "{self.api_group}"{where}'
