"""The incident lifecycle: its stages as types, the one function that moves them, and
the collaborators the cycle consults (the anomaly brake's watch, the surge watch, the
HPA floor keeper, approvals, verification).

Decisions: the stages and ``transition`` are pure (no store, no cluster, no clock), so
every move of an incident is tested with literals; the daemon's cycle feeds them events
and carries out the effects they return. The collaborators do the I/O of their one
concern and hand the cycle values, never a stage change of their own.
"""
