"""Healing through Git: a rollback of a workload that Argo CD or Flux owns lands as a
commit in the repository its syncer reads, so that the next sync keeps it.

``owner`` finds the syncer's object (an Argo CD Application, a Flux Kustomization and its
GitRepository) from the workload's tracking marks; ``pins`` finds where the image is
pinned under the synced path and edits it; ``repo`` runs the ``git`` CLI with
credentials kept out of argv and logs; ``rollback`` makes the commit, idempotent by its
trailers, and pushes it without ever rewriting history; ``forge`` opens and merges pull
(GitHub) or merge (GitLab) requests; ``story`` words the incident and the record;
``actuator`` puts these behind the daemon's ``Actuator``, so the loop is unchanged for
every other workload and action; ``build`` makes it from the settings.
"""
