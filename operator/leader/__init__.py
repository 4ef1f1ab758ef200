"""Leader election for running two operator replicas: one acts, the other waits for its Lease.

``election`` decides (pure: a Lease record, what this replica saw and when, and the clock in, a step
out); ``lease`` reads and writes the coordination.k8s.io/v1 Lease; ``elector`` runs the loops.
"""
