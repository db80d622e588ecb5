"""What one watch should see of a store change: Kubernetes' watch-cache rules for a selection.

A watch selects objects of one kind by namespace, label selector and field selector. When a stored object
changes, the watcher is told according to whether the object matched before and after the change
(k8s.io/apiserver pkg/storage/cacher: `cacheWatcher.convertToWatchEvent`; kos.apiserver.cache.event_for):

=============  ============  =========================================
matched before matched after what the watcher receives
=============  ============  =========================================
yes            yes           MODIFIED
no             yes           ADDED
yes            no            DELETED (the previous state)
no             no            nothing
=============  ============  =========================================

A deletion is DELETED for a watcher that its last state matched. Matching is
kos.apiserver.watchers.Watcher.matches: the namespace (None = all), then the label selector on the labels,
then the field selector on the kind's selectable fields (kos.api.resources.Resource.selectable). The
checker applies the same rules to the store's history to know what each recorded stream must contain.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kos.api.resources import BY_PLURAL, Resource
from kos.api.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from kos.chaos.storehistory import ADDED, DELETED, MODIFIED, StoreEvent

__all__ = ["Selection"]


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """Objects of `resource` in `namespace` (None: all) matching both selectors."""

    resource: Resource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector

    @classmethod
    def parse(cls, resource: str, namespace: str, label_selector: str, field_selector: str) -> Selection:
        """The selection a watch of `resource` (plural) sent: namespace "" is all namespaces, the selectors
        are their query strings. Raises KeyError for a kind kos does not serve and
        kos.api.selectors.SelectorError for a selector that does not parse."""
        return cls(
            BY_PLURAL[resource],
            namespace or None,
            parse_label_selector(label_selector),
            parse_field_selector(field_selector),
        )

    def matches(self, obj: Any) -> bool:
        """Whether `obj` (an object of this kind) is selected."""
        meta = obj.metadata
        if self.namespace is not None and meta.namespace != self.namespace:
            return False
        if self.labels.requirements and not self.labels.matches(meta.labels):
            return False
        return not self.fields.requirements or self.fields.matches(self.resource.field_values(obj))

    def event_type(self, e: StoreEvent) -> str | None:
        """ADDED, MODIFIED or DELETED: what a watcher of this selection receives for `e` (one change of an
        object of this kind), or None when it receives nothing (see the module docstring)."""
        if e.type == DELETED:
            return DELETED if self.matches(e.obj) else None
        now = self.matches(e.obj)
        before = e.prev is not None and self.matches(e.prev)
        if now:
            return MODIFIED if before else ADDED
        return DELETED if before else None
