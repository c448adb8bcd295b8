"""healer's exceptions, in one hierarchy.

::

    HealerError
    ├── ConfigError                 fatal at start-up: bad settings or an unknown scenario
    ├── PlaybookError               fatal at start-up: a playbook file that does not validate
    ├── CollectError                a cycle's metrics could not be read
    │   ├── PrometheusUnavailable
    │   └── QueryError
    ├── DetectError
    │   ├── ModelNotFitted
    │   ├── ModelMismatch
    │   └── SeriesError         a series or label file that cannot be read (file, row, column)
    ├── ActionError                 a request to the Kubernetes API failed
    │   ├── TransientActionError    retry later (conflict, timeout, 5xx)
    │   │   ├── PoliciesMissing     the policy CRDs are not installed (404 on healer.io)
    │   │   └── PolicyWatchExpired  410 Gone on a policy watch: list again
    │   └── PermanentActionError    escalate (forbidden, not found, refused by a precondition)
    ├── SilenceError                Alertmanager did not make or expire a silence
    └── StoreError                  the audit store cannot be read or written
        ├── UnknownRecord           no incident or action has the id asked for
        ├── ReviewConflict          approving or rejecting an action that is not pending
        └── IllegalTransition       an incident status change its lifecycle does not allow

The cycle catches ``HealerError`` per workload and carries on; any other exception is a
bug and stops the daemon. Third-party exceptions are wrapped at the edge that called the
library (``raise ActionError(...) from exc``), so that callers never see them.
"""

from __future__ import annotations


class HealerError(Exception):
    """Base of every error healer raises on purpose."""


class ConfigError(HealerError):
    pass


class PlaybookError(HealerError):
    """A playbook that does not load; the message names file, line and field."""


class CollectError(HealerError):
    pass


class PrometheusUnavailable(CollectError):
    pass


class QueryError(CollectError):
    pass


class DetectError(HealerError):
    pass


class ModelNotFitted(DetectError):
    pass


class ModelMismatch(DetectError):
    pass


class SeriesError(DetectError):
    """A time-series CSV or label file that cannot be scored; the message names file and row."""


class ActionError(HealerError):
    pass


class TransientActionError(ActionError):
    pass


class PermanentActionError(ActionError):
    pass


class PoliciesMissing(TransientActionError):
    """The API server does not serve a policy kind: its CRD is not installed."""


class PolicyWatchExpired(TransientActionError):
    """410 Gone: a policy watch's resourceVersion is too old; list again."""


class SilenceError(HealerError):
    """Alertmanager did not make or expire a silence (after the retries); recorded on the
    incident, never raised into the cycle."""


class StoreError(HealerError):
    pass


class UnknownRecord(StoreError):
    """No incident or action has the id asked for; the message names it."""


class ReviewConflict(StoreError):
    """An action can be approved or rejected only while it is pending approval."""


class IllegalTransition(StoreError):
    """An incident status change its lifecycle does not allow (``healer.audit.status``);
    the message names the incident, its status and the status asked for."""
